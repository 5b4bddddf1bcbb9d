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
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"
UNIT=$REPO/systemd/intel-gpu-driver.service

vm_args apcl "$@"
vm_need agent qemu
vm_root "mmdebstrap, build-bundle.sh's private mount namespace"
vm_kernels abi prev old
vm_other_kabi "$prev"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")
old_kver=$(<"$CACHE/$old/.done")
echo "systemd-vm: target $abi ($kver), bundle built for $prev, changed-kABI bundle for $old" >&2

rootfs=$(bash "$HERE/systemd-rootfs.sh" "$agent") || vm_die "systemd-rootfs.sh failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-systemd-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
img=$work/img

# ---- the image's parts: agent, unit, bundles, firmware -----------------------------------------
mkdir -p "$img"/{usr/local/bin,etc/systemd/system/multi-user.target.wants,opt/lib/firmware,bundles}
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
[[ ! -e $img/$VM_MODDIR/kernel/drivers/net/ethernet/intel/e1000 ]] || vm_die "e1000 got into the VM"
mkdir -p "$img/boot"
cp -L "$kdir/vmlinuz" "$img/boot/vmlinuz-$kver"
gzip -9c "$kdir/Module.symvers" >"$img/boot/symvers-$kver.gz"
cp -L "$kdir/root/boot/config-$kver" "$img/boot/"
cp "$UNIT" "$img/etc/systemd/system/intel-gpu-driver.service"
ln -s ../intel-gpu-driver.service "$img/etc/systemd/system/multi-user.target.wants/intel-gpu-driver.service"
vm_bundle "$prev" "$img/opt/lib/modules/$prev_kver"
vm_bundle "$old" "$img/bundles/old"
cp -r "$KMOD_SRC/firmware/agent-test" "$img/opt/lib/firmware/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")
helper_id=$(vm_file_id "$img/opt/lib/modules/$prev_kver/agent_test_helper.ko")
nic_id=$(vm_file_id "$img/opt/lib/modules/$prev_kver/agent_test_nic.ko")
[[ -n $helper_id && -n $nic_id ]] || vm_die "no build ids in the bundle's modules"

# Instrumentation: the state at the end of the start (ExecStartPost runs once systemd takes the
# start as done: for Type=notify, after READY=1), with full privileges ("+"), outside the sandbox.
mkdir -p "$img/etc/systemd/system/intel-gpu-driver.service.d"
cat >"$img/etc/systemd/system/intel-gpu-driver.service.d/zz-test-snapshot.conf" <<'EOF'
[Service]
ExecStartPost=+/e2e/systemd-start-done.sh
EOF

cat >"$img/etc/systemd/system/sdvm-check.service" <<'EOF'
[Unit]
Description=systemd-vm.sh's scenarios
After=intel-gpu-driver.service systemd-user-sessions.service systemd-journald.service
[Service]
Type=oneshot
ExecStart=/e2e/systemd-scenarios.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
EOF
ln -s ../sdvm-check.service "$img/etc/systemd/system/multi-user.target.wants/sdvm-check.service"

vm_e2e "$img" PREV_KVER="$prev_kver" OLD_KVER="$old_kver"
install -m 755 "$HERE/vm/systemd-scenarios.sh" "$HERE/vm/systemd-start-done.sh" "$img/e2e/"
vm_pack "$img" "$work/image.cpio"
cat "$rootfs" "$work/image.cpio" >"$work/initrd.cpio"

vm_run "$work/initrd.cpio" 600 "rdinit=/lib/systemd/systemd" "-m ${VM_MEM:-1024}, -smp ${VM_SMP:-1}" \
  -m "${VM_MEM:-1024}" -smp "${VM_SMP:-1}"

python3 "$HERE/systemd-check.py" "$SERIAL" "$NIC_BDF" "$helper_id" "$nic_id" "$fw_size" "$VM_SECONDS"
