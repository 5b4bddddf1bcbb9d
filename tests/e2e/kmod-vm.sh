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
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
KMOD_SRC=$REPO/tests/fixtures/kmod-src

die() { echo "kmod-vm: $*" >&2; exit 2; }
usage="usage: kmod-vm.sh [-p ABI] [-c ABI] [-l LOG] [ABI]"
prev=k61_same old=k61_old log=""
while getopts "p:c:l:" opt; do
  case $opt in
    p) prev=$OPTARG ;;
    c) old=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || die "$usage"
abi=${1:-k61}
bash "$HERE/fetch-kernels.sh" "$abi" "$prev" "$old" >&2 || die "fetch-kernels.sh $abi $prev $old failed"
abi=$(vm_abi "$abi") && prev=$(vm_abi "$prev") && old=$(vm_abi "$old") || die "no kernel for a role"
[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX (apt-get install busybox-static)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-kmod-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{proc,sys,dev,run,tmp}
vm_base_root "$root"
build() { bash "$KMOD_SRC/build-bundle.sh" "$@" >/dev/null || die "build-bundle.sh $* failed"; }
build "$prev" "$root/m/same"
build "$old" "$root/m/old"
build "$prev" "$root/m/foreign" --foreign
mkdir -p "$root/fw"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/fw/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")
fw_line=$(head -n 1 "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")

cat >"$root/init" <<INIT
#!/bin/sh
FW_SIZE=$fw_size
FW_LINE="$fw_line"
INIT
cat >>"$root/init" <<'INIT'
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dmesg -n 1
dmesg -c >/dev/null
NIC=0000:00:03.0
FWP=/sys/module/firmware_class/parameters/path
echo "KMODVM BEGIN $(uname -r)"
ok() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
step() { dmesg -c | sed "s/^/DMESG $1 /"; }
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
wait_bound() { i=0; while [ "$(driver)" != "$1" ] && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done; }
ins() { r=$(tryload insert "$1"); echo "${r#errno=}"; }
rem() { r=$(tryload remove "$1"); echo "${r#errno=}"; }

e=$(ins /m/old/agent_test_helper.ko)
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG old /'
ok "$([ "$e" = 8 ] && echo "$d" | grep -q "agent_test_helper: disagrees about version of symbol module_layout" && echo 0)" \
  "the k61_old build of agent_test_helper refused with errno $e (ENOEXEC=8), module_layout named"

echo "firmware_class.path before: '$(cat $FWP)'"
e1=$(ins /m/same/agent_test_helper.ko); e2=$(ins /m/same/agent_test_nic.ko); wait_bound agent_test_nic
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG same-nofw /'
ok "$([ "$e1/$e2" = 0/0 ] && echo 0)" "bundle helper then nic inserted: errno $e1, $e2"
ok "$([ "$(driver)" = agent_test_nic ] && echo 0)" "$NIC bound to $(driver)"
ok "$(echo "$d" | grep -q "agent_test_nic $NIC: firmware agent-test/agent_test_nic.bin missing (-2)" && echo 0)" \
  "without a firmware path the driver logs the firmware missing (-2)"
ok "$([ "$(cat /sys/module/agent_test_helper/refcnt)" = 1 ] && [ -e /sys/module/agent_test_helper/holders/agent_test_nic ] && echo 0)" \
  "agent_test_helper held by agent_test_nic (refcnt $(cat /sys/module/agent_test_helper/refcnt))"
echo "TAINT $(cat /proc/sys/kernel/tainted) nic=$(cat /sys/module/agent_test_nic/taint)"
e=$(rem agent_test_nic); step rmmod-nic
ok "$([ "$e" = 0 ] && [ "$(driver)" = - ] && echo 0)" "agent_test_nic removed (errno $e), $NIC unbound ($(driver))"

echo -n /fw >$FWP
e=$(ins /m/same/agent_test_nic.ko); wait_bound agent_test_nic
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG same-fw /'
ok "$([ "$e" = 0 ] && [ "$(driver)" = agent_test_nic ] && echo 0)" "agent_test_nic again with firmware_class.path=/fw: errno $e, bound to $(driver)"
ok "$(echo "$d" | grep -qF "agent_test_nic $NIC: firmware agent-test/agent_test_nic.bin: $FW_SIZE bytes: $FW_LINE" && echo 0)" \
  "the driver logs the firmware's size ($FW_SIZE) and first line"
e=$(rem agent_test_nic); step rmmod-nic2

out=$(insmod /m/same/agent_test_nic.ko fail_init=1 2>&1); rc=$?
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG fail-init /'
echo "INSMOD fail_init=1: rc=$rc: $out"
ok "$([ $rc != 0 ] && echo "$out" | grep -q "No such device or address" && echo "$d" | grep -q "fail_init=1" && echo 0)" \
  "insmod agent_test_nic.ko fail_init=1 fails with ENXIO ($out)"
ok "$([ ! -d /sys/module/agent_test_nic ] && echo 0)" "agent_test_nic not live after its failed init"
e=$(rem agent_test_helper); step rmmod-helper
ok "$([ "$e" = 0 ] && echo 0)" "the bundle's agent_test_helper removed (errno $e)"

e1=$(ins /m/foreign/agent_test_helper.ko); e2=$(ins /m/foreign/agent_test_holder.ko); step foreign
ok "$([ "$e1/$e2" = 0/0 ] && [ -e /sys/module/agent_test_helper/holders/agent_test_holder ] && echo 0)" \
  "foreign helper + holder inserted ($e1, $e2), holders: $(ls /sys/module/agent_test_helper/holders)"
e=$(rem agent_test_helper); step rmmod-held
ok "$([ "$e" = 11 ] && echo 0)" "the held foreign helper cannot be removed (errno $e, EAGAIN=11 with O_NONBLOCK)"
e=$(ins /m/same/agent_test_helper.ko); step same-over-foreign
ok "$([ "$e" = 17 ] && echo 0)" "the bundle's helper refused while the foreign one is live (errno $e, EEXIST=17)"
for n in agent_test_holder agent_test_helper; do
  echo "BUILDID live-$n $(od -An -tx1 -v /sys/module/$n/notes/.note.gnu.build-id | tr -d ' \n' | tail -c 40)"
done
echo "KMODVM END"
poweroff -f
INIT
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.cpio"
echo "kmod-vm: booting $kver; bundle built for $prev, changed kABI $old" >&2
vm_boot kmod-vm "$kdir" "$work/initrd.cpio" "$work/serial" "${AGENT_E2E_TIMEOUT:-600}" "" -nic user,model=e1000 || true
[[ -n $log ]] && cp "$work/serial.txt" "$log"

grep -E '^(DMESG|INSMOD|TAINT|BUILDID|firmware_class|PASS|FAIL)' "$work/serial.txt" || true
foreign_id=$(readelf -n "$root/m/foreign/agent_test_helper.ko" | awk '/Build ID:/ { print $3 }')
live_id=$(sed -n 's/^BUILDID live-agent_test_helper //p' "$work/serial.txt")
passed=$(grep -c '^PASS' "$work/serial.txt" || true) failed=$(grep -c '^FAIL' "$work/serial.txt" || true)
if [[ $live_id == "$foreign_id" ]]; then
  echo "PASS the live agent_test_helper is the foreign build ($live_id)"; passed=$((passed + 1))
else
  echo "FAIL the live agent_test_helper's build id $live_id, the foreign build's $foreign_id"; failed=$((failed + 1))
fi
if ! grep -q '^KMODVM END' "$work/serial.txt"; then
  echo "FAIL the VM ran to the end"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
