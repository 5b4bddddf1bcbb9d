#!/usr/bin/env bash
# The node build's whole flow inside ONE real-kernel VM (issue 7): the kernel of role k61 booted
# under qemu (TCG) with a real Debian 12 root filesystem (build-rootfs.sh: mmdebstrap minbase +
# gcc-12, make, dkms, kmod, the agent's runtime libraries, and k61's headers packages installed
# with dpkg) as an uncompressed initramfs. That root is both the node and the driver image; a
# second cpio appended per run carries the image's parts: the agent (-a) at
# /usr/local/bin/agent, the DKMS sources (tests/fixtures/kmod-src: dkms.conf + the two module
# directories) at /usr/src/agent-test-driver-1.0/, a copy that does not compile at
# /usr/src-broken/agent-test-driver-1.0/, the prebuilt bundle built for k61_old (another
# module_layout: refused by k61, so the decision is `build`) at /opt/lib/modules/<kver of
# k61_old>/ and the firmware at /opt/lib/firmware. The VM's /init runs, in this order:
#
#   whole-flow         the entrypoint `agent run --nfd-dir ...` (build mode node by default): phases
#                      pass through `building` to `ready`; source "built", build.result "built";
#                      0000:00:03.0 bound to agent_test_nic; the cache entry
#                      /var/lib/intel-gpu-driver/builds/<kver>/<key>/ = build.entry holds
#                      result.json, build.log and the .ko files whose build ids are the live
#                      modules' (and whose sha256 are the status's); no `.tmp-*` left
#   restart            SIGTERM (exit 0), started again: ready, build.result "cached" (or the fast
#                      path), no build (the cache directory unchanged, file by file)
#   agent-build        `agent build --json` (the build command) on the same cache: cached, with
#                      the entrypoint's key (built when the entrypoint built nothing); a second
#                      run cached; its modules inserted by hand bind 0000:00:03.0 to
#                      agent_test_nic with the files' build ids; removed again
#   compile-failure    after `agent unload`: the broken sources (--sources /usr/src-broken, its
#                      own --state-dir): phase refused, reasons[] build_failed, build.log in the VM
#                      holding the compiler's error; a second run: still refused, the log
#                      untouched (the recorded failure, no new compilation)
#   sigterm-build      a fresh --build-cache, SIGTERM while phase is `building` and the compiler
#                      runs: exit 0 within 10 s, phase `stopping`, nothing in the cache (no entry,
#                      no .tmp-*), no make/cc1/dkms process left, no $TMPDIR/agent-build.* left
#   signed             `agent build --signing-key --signing-cert` with a key and certificate this
#                      script makes with openssl, in a fresh cache: built; each module carries a
#                      PKCS#7 signature by that certificate (the files sent back over the serial
#                      console, checked here by modsig-check.py with openssl, not by the agent);
#                      inserted by hand (the kernel does not know the key: it loads, tainted - and
#                      only if it accepts the signature's format), the NIC binds; removed
# Timings (the in-VM build, start to ready) are printed as the benchmark.
#
# Usage: build-vm.sh [-a AGENT] [-c ABI] [-l LOG] [ABI]
#   ABI       the node's kernel, default the role k61
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -c ABI    the prebuilt bundle's kernel, another kABI (default k61_old)
#   -l LOG    keep the whole serial console there
# Output: what the VM saw for a failing scenario, the benchmark, "PASS|FAIL <what>" lines,
# "N passed, M failed". Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 1500), QEMU, VM_MEM (MiB, 3072),
# VM_SMP (2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"
# shellcheck source=tests/e2e/node-lib.sh
. "$HERE/node-lib.sh"

vm_args acl "$@"
vm_need agent qemu
vm_root "mmdebstrap, build-bundle.sh's private mount namespace"
vm_kernels --kbuild abi old
[[ $old != "$abi" ]] || vm_die "-c $old must be another kABI than the node's"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
old_kver=$(<"$CACHE/$old/.done")
echo "build-vm: node kernel $abi, prebuilt bundle built for $old" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-build-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- the root filesystem (cached) --------------------------------------------------------------
t=$SECONDS
rootfs=$(bash "$HERE/build-rootfs.sh" "$abi" "$agent") || vm_die "build-rootfs.sh failed"
echo "build-vm: root filesystem $rootfs ($(($(stat -c %s "$rootfs") / 1048576)) MiB) in $((SECONDS - t)) s" >&2
[[ ! -f $rootfs.info ]] || echo "build-vm: root filesystem made in $(<"$rootfs.info")" >&2

# ---- the image's parts, per run ------------------------------------------------------------------
img=$work/image
mkdir -p "$img/usr/local/bin" "$img/opt/lib/firmware"
strip --strip-debug -o "$img/usr/local/bin/agent" "$agent"
dkms_src "$img/usr/src"
dkms_src "$img/usr/src-broken"
printf '\nstatic int agent_test_broken(void) { return 1 +; } /* deliberately broken */\n' \
  >>"$img/usr/src-broken/agent-test-driver-1.0/agent_test_nic/agent_test_nic.c"
bash "$KMOD_SRC/build-bundle.sh" "$old" "$img/opt/lib/modules/$old_kver" >/dev/null ||
  vm_die "build-bundle.sh $old failed"
cp -r "$KMOD_SRC/firmware/agent-test" "$img/opt/lib/firmware/"
# signed: a key and certificate of the test's own (the kernel does not know them)
mkdir -p "$img/keys"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=agent tests/CN=agent build-vm signing" \
  -addext "keyUsage=digitalSignature" -keyout "$img/keys/signing.key" -out "$work/signing.crt" 2>/dev/null ||
  vm_die "openssl could not make a signing key"
cp "$work/signing.crt" "$img/keys/"

vm_init "$img" build
vm_pack "$img" "$work/image.cpio"
cat "$rootfs" "$work/image.cpio" >"$work/initrd.cpio"

vm_run "$work/initrd.cpio" 1500 "" "-m ${VM_MEM:-3072}, -smp ${VM_SMP:-2}" -m "${VM_MEM:-3072}" -smp "${VM_SMP:-2}"
echo "build-vm: the VM ran $VM_SECONDS s" >&2

python3 "$HERE/build-check.py" "$SERIAL" "$NIC_BDF" "$kver" "$VM_SECONDS" "$work/signing.crt"
