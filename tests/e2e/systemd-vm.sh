#!/usr/bin/env bash
# systemd/intel-gpu-driver.service under a real systemd: ONE boot of the kernel of role k61 under
# qemu (TCG) whose whole root is a Debian 12 with systemd as PID 1 (systemd-rootfs.sh, cached;
# rdinit=/lib/systemd/systemd), a plain host without Kubernetes. The kernel's module tree (a
# subset) and the image's parts come per run as a second cpio appended to the cached one: the
# agent at /usr/local/bin/agent, the unit at
# /etc/systemd/system/ (enabled: multi-user.target.wants), the test driver set
# (tests/fixtures/kmod-src, built for -p, the target's kABI) as the bundle at
# /opt/lib/modules/<kver of -p>/ with its firmware at /opt/lib/firmware/, and the build for -c
# (another module_layout) at /bundles/old. The root has no headers and no compiler; the kernel's
# Module.symvers is at /boot/symvers-<kver>.gz.
# Test instrumentation, not part of the unit: a drop-in ExecStartPost=+ that records what sysfs
# and systemd say at the moment systemd takes the start as done (for Type=notify: after READY=1),
# and a oneshot service ordered after the unit that runs the scenarios and prints what it sees
# on the serial console:
#
#   boot      the unit started at boot: at the end of its start the ready file exists and
#             0000:00:03.0 (qemu's e1000) is bound to agent_test_nic while systemd still says
#             activating (READY=1 came after ready, not at fork); then active/running,
#             `systemctl is-active` active, StatusText "ready: ...", `systemctl status` shows it,
#             NRestarts 0; the live modules' build ids (/sys/module/<m>/notes) are the bundle
#             files'; firmware_class.path set under the StateDirectory and the driver's firmware
#             line in the kernel log; systemd-user-sessions started after the unit was active
#             (Before=); `agent ready` exits 0; the sandbox in force on the main process (its capability bounding set,
#             no_new_privs, seccomp, / and /sys read-only, the firmware path file read-write)
#   stop      `systemctl stop`: inactive, result success, exit status 0, the ready file gone,
#             the modules still loaded and the NIC still bound (the stop does not unload);
#             `agent ready` exits 1
#   restart   `systemctl start` again: active, ready, the NIC bound by the same builds (the
#             modules stayed loaded: the fast path)
#   lost      `rmmod agent_test_nic` while ready: the agent hears the uevent through the
#             sandbox, StatusText "refused: no longer ready: ...", no ready file, still active
#             (READY=1 cannot be taken back), NRestarts 0; stopped
#   unload    `agent unload`: the modules gone (so the next bundle is not an upgrade)
#   refused   the bundle swapped for the -c build: `systemctl start` returns (READY=1 on
#             refusal), active, StatusText "refused: ..." naming module_layout, no ready file,
#             the NIC not bound, `agent ready` exits 1; 10 s later still active with the same main pid, NRestarts 0
#   stop2     `systemctl stop` again: inactive, exit status 0
#
# Usage: systemd-vm.sh [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]
#   ABI       the target kernel, default the role k61
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -p ABI    the bundle's build, the target's kABI (default k61_same)
#   -c ABI    the changed-kABI build (default k61_old)
#   -l LOG    keep the whole serial console there
# Output: "PASS|FAIL <what>" lines, "N passed, M failed", the VM's wall time.
# Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 600), QEMU.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
KMOD_SRC=$REPO/tests/fixtures/kmod-src
UNIT=$REPO/systemd/intel-gpu-driver.service
NIC_BDF=0000:00:03.0

die() { echo "systemd-vm: $*" >&2; exit 2; }

usage="usage: systemd-vm.sh [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]"
agent=${AGENT:-$REPO/build/agent/agent} prev=k61_same old=k61_old log=""
while getopts "a:p:c:l:" opt; do
  case $opt in
    a) agent=$OPTARG ;;
    p) prev=$OPTARG ;;
    c) old=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || die "$usage"
abi=${1:-k61}
[[ -x $agent ]] || die "no agent binary at $agent (build it, or pass -a AGENT)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap, build-bundle.sh's private mount namespace)"
bash "$HERE/fetch-kernels.sh" "$abi" "$prev" "$old" >&2 || die "fetch-kernels.sh $abi $prev $old failed"
abi=$(vm_abi "$abi") || die "no kernel for $abi"
prev=$(vm_abi "$prev") || die "no kernel for $prev"
old=$(vm_abi "$old") || die "no kernel for $old"
[[ $old != "$abi" && $old != "$prev" ]] || die "-c $old must be another kABI than the target and -p"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")
old_kver=$(<"$CACHE/$old/.done")
echo "systemd-vm: target $abi ($kver), bundle built for $prev, changed-kABI bundle for $old" >&2

rootfs=$(bash "$HERE/systemd-rootfs.sh" "$agent") || die "systemd-rootfs.sh failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-systemd-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
img=$work/img

# ---- the image's parts: agent, unit, bundles, firmware -----------------------------------------
mkdir -p "$img"/{usr/local/bin,usr/local/sbin,etc/systemd/system/multi-user.target.wants,opt/lib/firmware,bundles}
strip --strip-debug -o "$img/usr/local/bin/agent" "$agent"
# The kernel: its module tree with every index but only the agent's usual sample of its modules
# and their dependencies (never e1000: udev would bind it to qemu's NIC, which is the test
# driver's), its image and config. There are no headers; the kernel's CRCs come from
# /boot/symvers-<kver>.gz, the kernel's own Module.symvers where RHEL and SUSE keep it (the
# agent verifies it against the sample's __versions), so the refused case has nothing to build
# with and the ready case does not depend on which symbols the test driver imports.
mkdir -p "$img/usr/lib"
ln -s usr/lib "$img/lib"
vm_module_subset "$img" "$kdir" crc32_generic dummy loop fat
[[ ! -e $img/$VM_MODDIR/kernel/drivers/net/ethernet/intel/e1000 ]] || die "e1000 got into the VM"
mkdir -p "$img/boot"
cp -L "$kdir/vmlinuz" "$img/boot/vmlinuz-$kver"
gzip -9c "$kdir/Module.symvers" >"$img/boot/symvers-$kver.gz"
cp -L "$kdir/root/boot/config-$kver" "$img/boot/"
cp "$UNIT" "$img/etc/systemd/system/intel-gpu-driver.service"
ln -s ../intel-gpu-driver.service "$img/etc/systemd/system/multi-user.target.wants/intel-gpu-driver.service"
build() { bash "$KMOD_SRC/build-bundle.sh" "$@" >/dev/null || die "build-bundle.sh $* failed"; }
build "$prev" "$img/opt/lib/modules/$prev_kver"
build "$old" "$img/bundles/old"
cp -r "$KMOD_SRC/firmware/agent-test" "$img/opt/lib/firmware/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")
buildid() { readelf -n "$1" | awk '/Build ID:/ { print $3 }'; }
helper_id=$(buildid "$img/opt/lib/modules/$prev_kver/agent_test_helper.ko")
nic_id=$(buildid "$img/opt/lib/modules/$prev_kver/agent_test_nic.ko")
[[ -n $helper_id && -n $nic_id ]] || die "no build ids in the bundle's modules"

# Instrumentation: the state at the end of the start (ExecStartPost runs once systemd takes the
# start as done: for Type=notify, after READY=1), with full privileges ("+"), outside the sandbox.
mkdir -p "$img/etc/systemd/system/intel-gpu-driver.service.d"
cat >"$img/etc/systemd/system/intel-gpu-driver.service.d/zz-test-snapshot.conf" <<'EOF'
[Service]
ExecStartPost=+/usr/local/sbin/sdvm-at-start-done
EOF
cat >"$img/usr/local/sbin/sdvm-at-start-done" <<EOF
#!/bin/sh
NIC=$NIC_BDF
EOF
cat >>"$img/usr/local/sbin/sdvm-at-start-done" <<'EOF'
mkdir -p /run/sdvm
d=$(readlink /sys/bus/pci/devices/$NIC/driver 2>/dev/null) || d=-
echo "STARTDONE ready=$([ -e /run/intel-gpu-driver/ready ] && echo 1 || echo 0) driver=${d##*/}" \
  "state=$(systemctl show -p ActiveState --value intel-gpu-driver.service)" \
  "status=$(systemctl show -p StatusText --value intel-gpu-driver.service)" >>/run/sdvm/start-done
EOF

cat >"$img/etc/systemd/system/sdvm-check.service" <<'EOF'
[Unit]
Description=systemd-vm.sh's scenarios
After=intel-gpu-driver.service systemd-user-sessions.service systemd-journald.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/sdvm-check
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
EOF
ln -s ../sdvm-check.service "$img/etc/systemd/system/multi-user.target.wants/sdvm-check.service"

cat >"$img/usr/local/sbin/sdvm-check" <<EOF
#!/bin/bash
NIC=$NIC_BDF PREV_KVER=$prev_kver OLD_KVER=$old_kver
EOF
cat >>"$img/usr/local/sbin/sdvm-check" <<'EOF'
U=intel-gpu-driver.service
SD=/run/intel-gpu-driver
FWP=/sys/module/firmware_class/parameters/path
PROPS=ActiveState,SubState,Result,StatusText,NRestarts,MainPID,ExecMainStatus,ExecMainCode,ActiveEnterTimestampMonotonic,ExecMainStartTimestampMonotonic,Type,NotifyAccess
echo "SDVM BEGIN $(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
buildid() { od -An -tx1 -v "/sys/module/$1/notes/.note.gnu.build-id" 2>/dev/null | tr -d ' \n' | tail -c 40; }
live() { [ -d "/sys/module/$1" ] && echo 1 || echo 0; }
show() { systemctl show -p "$PROPS" "$U" | sed "s/^/SHOW $1 /"; }
facts() {
  echo "FACT $1 ready=$([ -e $SD/ready ] && echo 1 || echo 0) driver=$(driver)" \
    "helper=$(live agent_test_helper) nic=$(live agent_test_nic)" \
    "helper_id=$(buildid agent_test_helper) nic_id=$(buildid agent_test_nic) isactive=$(systemctl is-active $U)"
  echo "FWPATH $1 $(cat $FWP)"
}
probe() { r=$(agent ready 2>&1); echo "RC ready-$1 $? $r"; } # the readiness probe, as a script would use it
journal() { journalctl -b -u "$U" -o cat --no-pager 2>&1 | tail -n 40 | sed "s/^/JOURNAL $1 /"; }

# ---- boot: the unit was started by multi-user.target; this service runs after it -------------
sed 's/^/AT /' /run/sdvm/start-done 2>/dev/null || echo "AT STARTDONE none"
show boot
facts boot
echo "ISACTIVE boot $(systemctl is-active $U)"
probe boot
systemctl status --no-pager -n 0 "$U" 2>&1 | sed 's/^/STATUS boot /'
echo "ORDER sessions_start=$(systemctl show -p ExecMainStartTimestampMonotonic --value systemd-user-sessions.service)" \
  "sessions_state=$(systemctl show -p ActiveState --value systemd-user-sessions.service)" \
  "unit_active=$(systemctl show -p ActiveEnterTimestampMonotonic --value $U)"
dmesg | grep -E 'agent_test_nic .*firmware' | sed 's/^/DMESG boot /'
pid=$(systemctl show -p MainPID --value $U)
if [ -r "/proc/$pid/status" ]; then
  grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' "/proc/$pid/status" | tr -d '\t' | sed 's/^/PROC boot /'
  # mountinfo: mount point (5th field) and its per-mount options (6th)
  awk '$5 == "/" || $5 == "/sys" || $5 == "/sys/module/firmware_class/parameters/path" || $5 == "/var/lib/intel-gpu-driver" || $5 == "/run/intel-gpu-driver" || $5 == "/tmp" { print "MOUNT boot " $5 " " $6 }' "/proc/$pid/mountinfo"
else
  echo "PROC boot none"
fi
journal boot

# ---- stop ------------------------------------------------------------------------------------
timeout 60 systemctl stop "$U"; echo "RC stop $?"
show stop
facts stop
probe stop
journal stop

# ---- restart, then the driver lost while ready -------------------------------------------------
timeout 120 systemctl start "$U"; echo "RC restart $?"
show restart
facts restart
rmmod agent_test_nic; echo "RC rmmod $?"
n=0
while [ $n -lt 100 ] && ! systemctl show -p StatusText --value "$U" | grep -q '^refused: no longer ready'; do
  sleep 0.1; n=$((n + 1))
done
show lost
facts lost
echo "ISACTIVE lost $(systemctl is-active $U)"
timeout 60 systemctl stop "$U"; echo "RC stop-lost $?"
journal lost

# ---- unload: the modules go, so that the next bundle is a fresh start ---------------------------
agent unload >/tmp/unload.log 2>&1; echo "RC unload $?"
sed 's/^/LOG unload /' /tmp/unload.log
facts unload

# ---- refused: the changed-kABI build, no headers, no compiler ---------------------------------
mkdir -p /bundles/good
mv "/opt/lib/modules/$PREV_KVER" /bundles/good/
mv /bundles/old "/opt/lib/modules/$OLD_KVER"
: >/run/sdvm/start-done
T0=$(cut -d' ' -f1 /proc/uptime)
timeout 300 systemctl start "$U"; echo "RC refused-start $? t=$T0..$(cut -d' ' -f1 /proc/uptime)"
sed 's/^/AT /' /run/sdvm/start-done
show refused
facts refused
echo "ISACTIVE refused $(systemctl is-active $U)"
probe refused
systemctl status --no-pager -n 0 "$U" 2>&1 | sed 's/^/STATUS refused /'
sleep 10
show refused-later
journal refused

# ---- stop again ---------------------------------------------------------------------------------
timeout 60 systemctl stop "$U"; echo "RC stop2 $?"
show stop2
facts stop2

echo "SDVM END uptime=$(cut -d' ' -f1 /proc/uptime)"
systemctl --force --force poweroff
EOF
chmod +x "$img/usr/local/sbin/sdvm-check" "$img/usr/local/sbin/sdvm-at-start-done"
vm_pack "$img" "$work/image.cpio"
cat "$rootfs" "$work/image.cpio" >"$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-600}
serial=$work/serial.log
echo "systemd-vm: booting $kver with a $(($(stat -c %s "$work/initrd.cpio") / 1048576)) MiB initramfs" \
  "(-m ${VM_MEM:-1024}, -smp ${VM_SMP:-1}, timeout ${timeout_s}s)" >&2
t=$SECONDS
vm_boot systemd-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "rdinit=/lib/systemd/systemd" \
  -m "${VM_MEM:-1024}" -smp "${VM_SMP:-1}" -nic user,model=e1000 || true
vm_s=$((SECONDS - t))
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 "$HERE/systemd-check.py" "$serial.txt" "$NIC_BDF" "$helper_id" "$nic_id" "$fw_size" "$vm_s"
