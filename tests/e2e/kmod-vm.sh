#!/usr/bin/env bash
# The test driver set (tests/fixtures/kmod-src) on a real kernel: boot it ONCE under qemu (TCG)
# from a busybox initramfs and let the kernel itself insert the modules (no agent involved):
#   - the k61_old build (another module_layout) is refused with ENOEXEC
#   - the bundle (built for -p, the same CRCs as the target): agent_test_helper then
#     agent_test_nic insert, 0000:00:03.0 (qemu's e1000) binds to agent_test_nic; without a
#     firmware path the driver logs the firmware missing, with firmware_class.path on a
#     directory holding agent-test/agent_test_nic.bin it logs its size and first line
#   - `insmod agent_test_nic.ko fail_init=1` fails with ENXIO
#   - the foreign agent_test_helper + agent_test_holder insert, the holder holds the helper
#     (refcnt 1, holders/agent_test_holder), and the bundle's helper is then refused (EEXIST)
# The base of lifecycle-vm.sh (the agent's entrypoint under qemu).
#
# Usage: kmod-vm.sh [-p ABI] [-c ABI] [-l LOG] [ABI]
#   ABI     the target kernel (default the role k61)
#   -p ABI  the bundle's build (default k61_same);  -c ABI  the changed-kABI build (k61_old)
#   -l LOG  keep the serial console there
# Output: the kernel's messages per step, "PASS|FAIL <what>" lines, "N passed, M failed".
# Exit: 0 all passed, 1 some failed (or no answer from the VM), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (default 600), QEMU, BUSYBOX (static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"

vm_args pcl "$@"
vm_kernels abi prev old
vm_need busybox qemu gcc

kdir=$CACHE/$abi
kver=$(<"$kdir/.done")

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-kmod-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{proc,sys,dev,run,tmp}
vm_base_root "$root"
vm_bundle "$prev" "$root/m/same"
vm_bundle "$old" "$root/m/old"
vm_bundle "$prev" "$root/m/foreign" --foreign
mkdir -p "$root/fw"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/fw/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")
fw_line=$(head -n 1 "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")

vm_init "$root" kmod FW_SIZE="$fw_size" FW_LINE="$fw_line"
vm_pack "$root" "$work/initrd.cpio"
vm_run "$work/initrd.cpio" 600 "" "bundle built for $prev, changed kABI $old"

grep -E '^(DMESG|INSMOD|TAINT|BUILDID|firmware_class|PASS|FAIL)' "$SERIAL" || true
foreign_id=$(vm_file_id "$root/m/foreign/agent_test_helper.ko")
live_id=$(sed -n 's/^BUILDID live-agent_test_helper //p' "$SERIAL")
passed=$(grep -c '^PASS' "$SERIAL" || true) failed=$(grep -c '^FAIL' "$SERIAL" || true)
if [[ $live_id == "$foreign_id" ]]; then
  echo "PASS the live agent_test_helper is the foreign build ($live_id)"; passed=$((passed + 1))
else
  echo "FAIL the live agent_test_helper's build id $live_id, the foreign build's $foreign_id"; failed=$((failed + 1))
fi
if ! grep -q '^KMODVM END' "$SERIAL"; then
  echo "FAIL the VM ran to the end"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
