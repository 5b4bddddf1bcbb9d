#!/usr/bin/env bash
# The agent's entrypoint end to end on a real kernel: boot it ONCE under qemu (TCG) from a
# busybox initramfs that is a small but real host (as check-vm.sh builds it: the agent and its
# shared libraries, pci.ids, the kernel's /lib/modules/<kver> with its indexes and a subset of
# its modules, the `build` link and the headers, /boot/vmlinuz-<kver>, /etc/os-release) plus
# the image's parts: the bundle of the test driver set (tests/fixtures/kmod-src, built for -p,
# the target's kABI) at /opt/lib/modules/<kver of -p>/ and its firmware at /opt/lib/firmware.
# The VM's /init runs the agent as a background process on the live /sys, /proc and /dev
# (/run a tmpfs; no test-only switch) through these scenarios, in this order:
#
#   first-load    `agent run --nfd-dir ...`: ready; agent_test_helper + agent_test_nic live and
#                 inserted by it; 0000:00:03.0 (qemu's e1000) bound to agent_test_nic; the
#                 bundle firmware copied under /var/lib/intel-gpu-driver/firmware/<digest>/ and
#                 firmware_class.path set there (the driver's dmesg line names the firmware's
#                 size); status.json (phase, decision, source, pid, boot id, kernel, devices,
#                 modules, firmware) and the NFD file right
#   second-agent  another agent on the same state dir exits 2 naming the holder's pid
#   sigterm       SIGTERM: exit 0, the ready file gone, phase "stopping", the modules stay
#   restart       `agent run` again: the fast path (nothing reinserted), ready
#   rmmod         someone removes agent_test_nic while ready: the ready file goes within 5 s
#                 and status.event names agent_test_nic
#   unload        `agent unload --json`: exit 0, the modules gone, firmware_class.path back to
#                 what it was before the agent
#   changed-kabi  --bundle with the build for -c (another module_layout) and --build-mode off:
#                 decision build, refused with build_disabled, module_layout named, nothing
#                 loaded, no ready file
#   sidecar       the Driver Toolkit sidecar's role is played before the boot by this machine:
#                 `agent build --root NODE` against a node tree with the target kernel's real
#                 headers packages (node-lib.sh); its cache is the VM's
#                 /var/lib/intel-gpu-driver/builds. The changed-kABI bundle with --build-mode
#                 sidecar: the entry found, checked, loaded (source built, the live build ids
#                 the sidecar's), the NIC bound, ready; restarted: the built set's fast path;
#                 agent unload removes it
#   sidecar-fail  sources the sidecar could not compile (its failure recorded): refused,
#                 build_failed, the log (in the VM) names the compiler's error
#   sidecar-wait  sources nothing was built for: waiting-for-build, then build_wait_timeout
#   dtk           the node's headers hidden; `agent --check --image-headers DIR` with a Driver
#                 Toolkit image's headers: for another kernel only, or named as the node's but
#                 holding another kernel's Module.symvers -> refuse, kernel_headers_mismatch;
#                 the node's own -> build possible with them
#   init-fail     /etc/modprobe.d: `options agent_test_nic fail_init=1`: agent_test_nic's init
#                 fails (ENXIO), agent_test_helper rolled back, status.failure names the module,
#                 ENXIO and the kernel's log; the conf removed + SIGHUP: ready
#   foreign-held  a foreign agent_test_helper (same name, another build id) held by
#                 agent_test_holder: --exit-on-refuse exits 20, decision refuse, the conflict
#                 names agent_test_holder; the foreign modules untouched
#   intree-swap   the foreign agent_test_helper as the kernel's own module (in the tree,
#                 depmod'ed), loaded and unused: removed before loading (status.removed), the
#                 bundle ready; `agent unload` removes the bundle and inserts the kernel's own
#                 module again (restored, with its own build id)
#   ro-state      --state-dir on a read-only tmpfs: exit 2, the message names the directory,
#                 no ready file
#   fw-conflict   firmware_class.path set by someone else (/elsewhere): kept,
#                 status.firmware.conflict says so
#   enforced      module.sig_enforce switched on (it can only be switched on, so last): a build
#                 would make unsigned modules: refused, build_unsigned_enforced, nothing loaded
#   faults        (before dtk) a watcher checks through every scenario that a ready file is only
#                 seen while its status says ready; early-hup: SIGHUP right after exec, still
#                 ready; `agent ready` 0, then after kill -9 the stale ready file fails it (1);
#                 kill9-init: agent_test_nic sleeps in its init (init_delay_ms from modprobe.d),
#                 the agent is killed there: the journal names it intended, the restart adopts
#                 it (fast path), agent unload removes it; ready-dir: a directory named ready is
#                 removed first; deep-journal: undo.json nested 100,000 deep: refused
#                 journal_unreadable (alive), unload and --check exit 2 naming it, removed +
#                 SIGHUP: ready; forged-journal: unload touches no module without a build id,
#                 no restore path outside the kernel's tree, no foreign NFD file or firmware
#                 path (exit 1); fs-full: the state filesystem full, the driver lost, SIGHUP:
#                 nothing inserted, alive; freed + SIGHUP: ready; broken-cache: five broken
#                 copies of the sidecar's entry, each refused build_failed naming file and field
# The start-to-ready times of first-load and restart (wall clock in the VM and status.timings)
# are printed as the benchmark.
#
# Usage: lifecycle-vm.sh [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]
#   ABI       the target kernel, default the role k61 (6.1.0-56 while the archive serves it)
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -p ABI    the bundle's build, the target's kABI (default k61_same)
#   -c ABI    the changed-kABI build (default k61_old)
#   -l LOG    keep the whole serial console there
# Output: per scenario what the VM saw on failure (status.json at the key moments, the agent's
# log, the kernel's messages), the benchmark, "PASS|FAIL <what>" lines, "N passed, M failed".
# Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 1200), QEMU, BUSYBOX (static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"
# shellcheck source=tests/e2e/node-lib.sh
. "$HERE/node-lib.sh"

vm_args apcl "$@"
vm_kernels abi prev old
echo "lifecycle-vm: target $abi, bundle built for $prev, changed-kABI bundle for $old" >&2
vm_other_kabi "$prev"
vm_need agent busybox qemu gcc pci.ids
vm_root "build-bundle.sh builds in a private mount namespace"

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-lifecycle-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# ---- the host: tools, the agent, the target kernel (vm_host_root, as check-vm.sh) -------------
vm_host_root "$root" "$kdir" "$agent" e1000 crc32_generic dummy loop fat
mkdir -p "$root"/{etc/modprobe.d,var/lib}
headers=$VM_HEADERS
[[ -n $headers && -f $root$headers/Makefile && -f $root$headers/Module.symvers ]] ||
  vm_die "no headers (Makefile, Module.symvers) of $kver in the cache: the changed-kABI case needs a possible build"

# ---- the image: the bundle, its firmware; the other builds ------------------------------------
vm_bundle "$prev" "$root/opt/lib/modules/$prev_kver"
vm_bundle "$old" "$root/bundles/old"
vm_bundle "$prev" "$root/foreign" --foreign
# The foreign helper also as the kernel's own module (in its tree, indexed again by depmod): a
# loaded, unused module of a bundle module's name, which the agent removes before loading and
# `agent unload` inserts again.
mkdir -p "$root/lib/modules/$kver/updates"
cp "$root/foreign/agent_test_helper.ko" "$root/lib/modules/$kver/updates/"
depmod -b "$root" "$kver" || vm_die "depmod -b $root $kver failed"
mkdir -p "$root/opt/lib/firmware"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/opt/lib/firmware/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")

# ---- the Driver Toolkit sidecar's role, played by this machine: `agent build --root NODE` -----
[[ $abi == "$(vm_abi k61)" ]] || vm_die "the sidecar scenarios need the kernel of role k61 (make-host.sh debian12)"
bash "$HERE/fetch-kernels.sh" --kbuild "$abi" >&2 || vm_die "fetch-kernels.sh --kbuild $abi failed"
node_with_headers "$work/node" "$abi" || vm_die "node_with_headers $abi failed"
dkms_src "$root/usr/src"
dkms_src "$root/usr/src-broken"
echo '#error agent-test: deliberately broken' >>"$root/usr/src-broken/agent-test-driver-1.0/agent_test_nic/agent_test_nic.c"
dkms_src "$root/usr/src-other"
echo '# sources nothing was built for' >>"$root/usr/src-other/agent-test-driver-1.0/dkms.conf"
sidecar() { # sidecar TAG SOURCES [ARGS]: agent build as the sidecar runs it, its JSON in $work/sidecar-TAG.json
  local tag=$1 src=$2
  shift 2
  mkdir -p "$work/tmp"
  TMPDIR=$work/tmp "$agent" build --root "$work/node" --sources "$src" --json "$@" >"$work/sidecar-$tag.json" \
    2>"$work/sidecar-$tag.err" || true
}
# The sidecar signs with a key of its own (a Secret); this kernel does not trust it, so the
# modules load tainted - and only if the kernel accepts the signature's format.
mkdir -p "$root/keys"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=agent tests/CN=agent test module signing" \
  -addext "keyUsage=digitalSignature" -keyout "$work/signing.key" -out "$root/keys/signing.crt" 2>/dev/null ||
  vm_die "openssl could not make a signing key"
sidecar good "$root/usr/src" --signing-key "$work/signing.key" --signing-cert "$root/keys/signing.crt"
sidecar broken "$root/usr/src-broken"
jfield() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$@"; }
[[ $(jfield "$work/sidecar-good.json" result) == built ]] ||
  vm_die "the sidecar's build failed: $(cat "$work/sidecar-good.json" "$work/sidecar-good.err")"
[[ $(jfield "$work/sidecar-broken.json" result) == failed ]] ||
  vm_die "the sidecar's build of broken sources did not fail: $(cat "$work/sidecar-broken.json")"
side_key=$(jfield "$work/sidecar-good.json" key)
# Driver Toolkit images' headers (what matters of them here: Makefile and Module.symvers)
old_kver=$(<"$CACHE/$old/.done")
for d in "dtk-other/$old_kver:$old" "dtk-renamed/$kver:$old" "dtk-good/$kver:$abi"; do
  mkdir -p "$root/${d%%:*}"
  cp "$root$headers/Makefile" "$root/${d%%:*}/"
  cp "$CACHE/${d##*:}/Module.symvers" "$root/${d%%:*}/"
done
side_entry=$work/node/var/lib/intel-gpu-driver/builds/$kver/$side_key
# The sidecar's modules carry a PKCS#7 signature by the test certificate: checked here without
# the agent (modsig-check.py: the trailer, openssl cms -verify). The VM then proves that the
# kernel took files so signed (their build ids), which a malformed signature forbids (EBADMSG).
python3 "$HERE/modsig-check.py" "$root/keys/signing.crt" "$side_entry"/*.ko >"$work/sidecar-sig.txt" || true
mkdir -p "$root/var/lib/intel-gpu-driver"
cp -a "$work/node/var/lib/intel-gpu-driver/builds" "$root/var/lib/intel-gpu-driver/"
# broken-cache: copies of the sidecar's good entry, each with one thing of the wrong shape (as a
# hand edit, a half-written disk or another tool could leave it); each its own cache.
for v in modules-string file-escape kernel-number failed-type deep; do
  b=$root/var/lib/igd-broken-$v/builds/$kver
  mkdir -p "$b"
  cp -a "$side_entry" "$b/"
  python3 - "$b/$side_key" "$v" <<'PY'
import json, os, sys
entry, variant = sys.argv[1:3]
path = os.path.join(entry, "result.json")
j = json.load(open(path))
if variant == "modules-string":
    j["modules"] = "agent_test_nic.ko"
elif variant == "file-escape":
    j["modules"][0]["file"] = "../../../../../etc/os-release"
elif variant == "kernel-number":
    j["kernel"] = 61
elif variant == "failed-type":
    os.remove(path)
    path = os.path.join(entry, "failed.json")
    j = {"schema": 1, "kernel": j["kernel"], "key": j["key"], "reason": 7, "detail": "x", "inputs": j["inputs"]}
if variant == "deep":
    open(path, "w").write('{"inputs": ' + "[" * 100000 + "]" * 100000 + "}")
else:
    json.dump(j, open(path, "w"))
PY
done

vm_init "$root" lifecycle
vm_pack "$root" "$work/initrd.cpio"

vm_run "$work/initrd.cpio" 1200 "" ""

python3 "$HERE/lifecycle-check.py" "$SERIAL" "$NIC_BDF" "$fw_size" \
  "$(vm_file_id "$root/opt/lib/modules/$prev_kver/agent_test_helper.ko")" \
  "$(vm_file_id "$root/opt/lib/modules/$prev_kver/agent_test_nic.ko")" \
  "$(vm_file_id "$root/foreign/agent_test_helper.ko")" "$kver" "$side_key" \
  "$(vm_file_id "$side_entry/agent_test_helper.ko")" "$(vm_file_id "$side_entry/agent_test_nic.ko")" \
  "$work/sidecar-sig.txt"
