#!/usr/bin/env python3
"""Writes a small seed corpus for each fuzz target into OUT/<target>/.

Seeds come from real files when they are available - the Debian kernels cached by
tests/e2e/fetch-kernels.sh (${AGENT_KERNEL_CACHE:-~/.cache/intel-gpu-agent/kernels}): heads of
their Module.symvers, their smallest modules (signed, and with the signature stripped), .ko.xz
from trixie, the certificate built into a kernel image - and from a tiny module-shaped object
compiled from C here, so a machine without the cache still gets a useful corpus.
OUT/certs/ receives the DER certificates the signature target checks signatures against. Every seed is small (<= 32 KiB): libFuzzer mutates small
inputs much faster, and its max_len follows the largest seed.

usage: make-seeds.py OUT
"""
import gzip
import lzma
import os
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zlib

MAGIC = b"~Module signature appended~\n"
MAX_SEED = 32 * 1024


def kernel_cache():
    root = pathlib.Path(os.environ.get("AGENT_KERNEL_CACHE",
                                       pathlib.Path.home() / ".cache/intel-gpu-agent/kernels"))
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / "Module.symvers").is_file() and (d / "modules").is_dir())


def strip_signature(data):
    """The module image without its signature trailer (as the kernel's ELF loader sees it)."""
    if not data.endswith(MAGIC) or len(data) < len(MAGIC) + 12:
        return data
    ms = data[-len(MAGIC) - 12:-len(MAGIC)]
    sig_len = int.from_bytes(ms[8:12], "big")
    end = len(data) - len(MAGIC) - 12 - sig_len
    return data[:end] if end > 0 else data


SYNTHETIC_C = r"""
struct modversion_info { unsigned long crc; char name[64 - sizeof(unsigned long)]; };
__attribute__((section(".modinfo"), used)) static const char modinfo[] =
    "version=1.0\0license=GPL\0description=fuzz seed\0author=agent\0"
    "alias=pci:v00008086d000056A0sv*sd*bc03sc*i*\0alias=pci:v00008086d0000100Esv*sd*bc*sc*i*\0"
    "firmware=i915/dg2_guc_70.bin\0import_ns=DMA_BUF\0depends=drm,drm_kms_helper\0"
    "srcversion=0123456789ABCDEF012345\0name=fuzzseed\0"
    "vermagic=6.1.0-55-amd64 SMP preempt mod_unload modversions \0";
__attribute__((section("__versions"), used)) static const struct modversion_info versions[] = {
    {0x9060323f, "module_layout"}, {0x92997ed8, "_printk"}, {0x2b68bd2f, "dma_buf_get"}};
struct module_like { char pad[24]; char name[56]; char rest[1264]; };
__attribute__((section(".gnu.linkonce.this_module"), used))
struct module_like __this_module = {.name = "fuzzseed"};
extern int _printk(const char *, ...);
extern void *dma_buf_get(int) __attribute__((weak));
int fuzzseed_export(int x) { return _printk("%d", x) + (dma_buf_get ? 1 : 0); }
__attribute__((section("__ksymtab_gpl"), used)) static const int __ksymtab_fuzzseed_export[3] = {0, 0, 0};
__attribute__((section("__kcrctab_gpl"), used)) static const unsigned __crc_fuzzseed_export = 0x12345678;
__attribute__((section("__ksymtab_strings"), used)) static const char __kstrtabns_fuzzseed_export[] = "FUZZ_NS";
int init_module(void) { return fuzzseed_export(1); }
"""


def synthetic_modules(tmp):
    """Module-shaped relocatable objects compiled from C (64- and, if possible, 32-bit)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("cc") or shutil.which("clang")
    if not cc:
        return []
    src = tmp / "fuzzseed.c"
    src.write_text(SYNTHETIC_C)
    out = []
    for flags, name in ((["-m64"], "fuzzseed64.ko"), (["-m32"], "fuzzseed32.ko")):
        obj = tmp / name
        r = subprocess.run([cc, "-c", "-O1", "-fno-asynchronous-unwind-tables", "-fno-pic", *flags,
                            "-o", str(obj), str(src)], capture_output=True)
        if r.returncode == 0:
            out.append(obj.read_bytes())
    return out


def bzimage(payload):
    """An x86 boot image: setup_sects = 1, boot protocol 2.15, payload right after the setup."""
    setup = bytearray(1024)
    setup[0x1f1] = 1
    setup[0x1fe:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    setup[0x206:0x208] = (0x020F).to_bytes(2, "little")
    setup[0x248:0x24C] = (0).to_bytes(4, "little")
    setup[0x24C:0x250] = len(payload).to_bytes(4, "little")
    return bytes(setup) + payload


def kernel_certificates(kernel):
    """The DER certificates built into a cached kernel's vmlinuz (xz/gzip payload), or []."""
    image = kernel / "vmlinuz"
    if not image.is_file() or not shutil.which("openssl"):
        return []
    img = image.read_bytes()
    if len(img) < 0x250 or img[0x202:0x206] != b"HdrS":
        return []
    start = ((img[0x1F1] or 4) + 1) * 512 + int.from_bytes(img[0x248:0x24C], "little")
    payload = img[start:start + int.from_bytes(img[0x24C:0x250], "little")]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            vmlinux = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            vmlinux = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
        else:
            return []
    except Exception:
        return []
    certs, at = [], vmlinux.find(b"\x30\x82")
    while at != -1 and len(certs) < 4:
        n = int.from_bytes(vmlinux[at + 2:at + 4], "big") + 4
        if vmlinux[at + 4:at + 6] == b"\x30\x82" and vmlinux[at + 8] in (0xA0, 0x02):
            der = vmlinux[at:at + n]
            r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout"], input=der, capture_output=True)
            if r.returncode == 0:
                certs.append(der)
                at = vmlinux.find(b"\x30\x82", at + n)
                continue
        at = vmlinux.find(b"\x30\x82", at + 1)
    return certs


def generated_certificate():
    """A throwaway self-signed RSA certificate (DER), when no kernel is cached."""
    if not shutil.which("openssl"):
        return []
    with tempfile.TemporaryDirectory() as t:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            f"{t}/key.pem", "-subj", "/CN=agent fuzz seed", "-days", "1", "-outform",
                            "DER", "-out", f"{t}/cert.der"], capture_output=True)
        return [pathlib.Path(f"{t}/cert.der").read_bytes()] if r.returncode == 0 else []


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    seeds = {t: {} for t in ("symvers", "module", "decompress", "signature", "kernel_image", "stablelist",
                             "host_text", "state_json")}

    def add(target, name, data):
        if 0 < len(data) <= MAX_SEED and data not in seeds[target].values():
            seeds[target][name] = data

    # One kernel per major.minor series is enough variety (6.1 plain .ko, 6.12 .ko.xz).
    kernels, series = [], set()
    for k in kernel_cache():
        s = ".".join(k.name.split(".")[:2])
        if s not in series:
            series.add(s)
            kernels.append(k)

    # symvers: real heads (5-column), the namespaced lines, a 4-column form, CRLF, all-zero CRCs.
    symvers_text = []
    for k in kernels[:2]:
        lines = (k / "Module.symvers").read_bytes().splitlines(keepends=True)
        symvers_text.append(b"".join(lines[:60]))
        ns = [ln for ln in lines if ln.count(b"\t") == 4 and not ln.rstrip(b"\n").endswith(b"\t")]
        symvers_text.append(b"".join(ns[:30]))
    if not symvers_text:
        symvers_text.append(b"0x9060323f\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
                            b"0x2b68bd2f\tdma_buf_get\tvmlinux\tEXPORT_SYMBOL_GPL\tDMA_BUF\n"
                            b"0x12345678\tdrm_dev_enter\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\t\n")
    for i, text in enumerate(symvers_text):
        add("symvers", f"real{i}", text)
        four = b"".join(b"\t".join(ln.rstrip(b"\n").split(b"\t")[:4]) + b"\n" for ln in text.splitlines())
        add("symvers", f"fourcol{i}", four)
        add("symvers", f"crlf{i}", text.replace(b"\n", b"\r\n"))
        zero = b"".join(b"0x00000000" + ln[10:] + b"\n" for ln in text.splitlines())
        add("symvers", f"zero{i}", zero)
    add("symvers", "gpl_future", b"0x00000001\told\tvmlinux\tEXPORT_SYMBOL_GPL_FUTURE\n"
                                 b"0x00000002\tunused\tvmlinux\tEXPORT_UNUSED_SYMBOL\n"
                                 b"0x00000003\tunused_gpl\tlib/x\tEXPORT_UNUSED_SYMBOL_GPL\n")

    # modules: the smallest real ones (signed and stripped), one that exports symbols, .ko.xz.
    modules = []
    with tempfile.TemporaryDirectory() as t:
        for i, data in enumerate(synthetic_modules(pathlib.Path(t))):
            modules.append((f"synthetic{i}", data))
    for k in kernels:
        tree = k / "modules"
        kos = sorted((p for p in tree.rglob("*.ko") if p.stat().st_size <= MAX_SEED),
                     key=lambda p: (p.stat().st_size, str(p)))
        for p in kos[:2]:
            modules.append((f"{k.name}-{p.stem}", p.read_bytes()))
        exporting = [p for p in kos[:200] if b"__kcrctab" in p.read_bytes()]
        for p in exporting[:1]:
            modules.append((f"{k.name}-{p.stem}-exports", p.read_bytes()))
        xzs = sorted((p for p in tree.rglob("*.ko.xz") if p.stat().st_size <= MAX_SEED // 4),
                     key=lambda p: (p.stat().st_size, str(p)))
        for p in xzs[:1]:
            modules.append((f"{k.name}-{p.name}", p.read_bytes()))
    for name, data in modules:
        add("module", name, data)
        plain = lzma.decompress(data) if data.startswith(b"\xfd7zXZ\x00") else data
        stripped = strip_signature(plain)
        if stripped is not plain:
            add("module", name + "-unsigned", stripped)
        # signature: the trailer with a bit of image before it; first byte 0 = input as is,
        # 1 = the harness appends the magic (so it is left off here).
        if plain.endswith(MAGIC):
            tail = plain[-4096:]
            add("signature", name, b"\x00" + tail)
            add("signature", name + "-nomagic", b"\x01" + tail[:-len(MAGIC)])
        elif len(seeds["signature"]) < 2:
            add("signature", name + "-unsigned", b"\x00" + plain[-512:])

    # decompress: small real payloads in each format, and truncated streams.
    payloads = [symvers_text[0][:2048]] + [strip_signature(d) for _, d in modules[:1]]
    for i, p in enumerate(payloads):
        forms = {"gz": gzip.compress(p, 9), "xz": lzma.compress(p, check=lzma.CHECK_CRC32)}
        if shutil.which("zstd"):
            r = subprocess.run(["zstd", "-q", "-c", "-19"], input=p, capture_output=True)
            if r.returncode == 0:
                forms["zst"] = r.stdout
        for ext, data in forms.items():
            add("decompress", f"p{i}.{ext}", data)
            add("decompress", f"p{i}-truncated.{ext}", data[: len(data) // 2])
    add("decompress", "plain", b"not compressed\n")

    # kernel_image: tiny bzImages (setup header + compressed payload + le32 size), a bare ELF,
    # and a stream behind junk (found by the magic scan), each holding a real certificate.
    certs = kernel_certificates(kernels[0]) if kernels else []
    if not certs:
        certs = generated_certificate()
    cert_dir = out / "certs"
    if cert_dir.exists():
        shutil.rmtree(cert_dir)
    cert_dir.mkdir(parents=True)
    for i, der in enumerate(certs):
        (cert_dir / f"cert{i}.der").write_bytes(der)
    if certs:
        vmlinux = b"\x7fELF\x02\x01\x01" + bytes(57) + b"".join(certs) + bytes(64)
        add("kernel_image", "vmlinux", vmlinux)
        add("kernel_image", "junk-then-gzip", b"junk" * 8 + gzip.compress(vmlinux))
        streams = {"gz": gzip.compress(vmlinux), "xz": lzma.compress(vmlinux, check=lzma.CHECK_CRC32)}
        if shutil.which("zstd"):
            r = subprocess.run(["zstd", "-q", "-c", "-19"], input=vmlinux, capture_output=True)
            if r.returncode == 0:
                streams["zst"] = r.stdout
        for ext, stream in streams.items():
            add("kernel_image", f"bzimage.{ext}", bzimage(stream + len(vmlinux).to_bytes(4, "little")))

    # The host's text files the entrypoint reads (/proc/modules, modprobe.d, /proc/cmdline).
    add("host_text", "proc_modules", b"i915 3706880 2 kvmgt, Live 0xffffffffc0a00000 (E)\n"
        b"agent_test_nic 16384 -1 - Unloading 0xffffffffc0299000 (OE-)\nnoise 4096 - - Loading 0x0\n")
    add("host_text", "modprobe_d", b"# c\noptions i915 enable_guc=3\n options agent-test-nic fail_init=1 \\\n"
        b"  x=\"a b\"\ninstall i915 /bin/false\n")
    add("host_text", "cmdline", b"BOOT_IMAGE=/boot/vmlinuz ro i915.enable_psr=0 xe.force_probe=\"*\" quiet -- init.x=1\n")
    add("host_text", "builtin", b"kernel/drivers/gpu/drm/drm.ko\nkernel/fs/ext4/ext4.ko\n")
    # The agent's own state files: a journal of this boot (one step intended), cache records.
    boot = "5b1f8f6e-6a2e-4c27-9d55-1b2c3d4e5f60"
    add("state_json", "journal", json.dumps({
        "schema": 2, "boot_id": boot, "source": "prebuilt",
        "inserted": [{"name": "agent_test_helper", "build_id": "ab12", "state": "done"},
                     {"name": "agent_test_nic", "build_id": "cd34", "state": "intended"}],
        "removed": [{"name": "i915", "restore_path": "/lib/modules/6.1.0-56-amd64/kernel/i915.ko", "state": "done"}],
        "firmware_previous_path": "", "firmware_path": "/var/lib/intel-gpu-driver/firmware/0abc",
        "firmware_state": "intended", "nfd_file": "/etc/kubernetes/node-feature-discovery/features.d/intel-gpu-driver"}).encode())
    inputs = {"release": "6.1.0-56-amd64", "proc_version": "Linux version 6.1.0-56-amd64", "sources_sha256": "ab" * 32}
    add("state_json", "result", json.dumps({
        "schema": 1, "kernel": "6.1.0-56-amd64", "key": "k", "inputs": inputs,
        "signer": {"name": "agent tests", "key_id": "0a"},
        "modules": [{"name": "agent_test_nic", "file": "agent_test_nic.ko", "sha256": "cd" * 32}]}).encode())
    add("state_json", "failed", json.dumps({"schema": 1, "kernel": "6.1.0-56-amd64", "reason": "build_failed",
                                            "detail": "x.c:1: error", "inputs": inputs}).encode())
    add("state_json", "bundle_manifest", json.dumps({
        "schema": 1, "kernel": {"release": "6.1.0-56-amd64", "compiler": "gcc-12"},
        "sources": {"name": "agent-test-driver", "version": "1.0", "digest": "ab" * 32},
        "modules": [{"name": "agent_test_nic", "file": "extra/agent_test_nic.ko", "sha256": "cd" * 32,
                     "vermagic": "6.1.0-56-amd64 SMP preempt mod_unload modversions ", "build_id": "c970"}]}).encode())
    add("state_json", "status", b'{"schema": 1, "phase": "ready", "boot_id": "' + boot.encode() + b'"}')
    # stablelist: RHEL's sectioned form with real symbol names, a plain list, comments, CRLF.
    names = [line.split(b"\t")[1] for text in symvers_text[:1] for line in text.splitlines()[:40]
             if line.count(b"\t") >= 3]
    add("stablelist", "rhel", b"[rhel9_x86_64_stablelist]\n" + b"".join(b"\t" + n + b"\n" for n in names))
    add("stablelist", "plain", b"# plain list\n" + b"\r\n".join(names[:10]) + b"\n")
    add("stablelist", "sections", b"[a]\n\tx\n\n[b]\n\ty.z$\n")

    for target, files in seeds.items():
        d = out / target
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for name, data in files.items():
            (d / name.replace("/", "_")).write_bytes(data)
        print(f"seeds: {target}: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
