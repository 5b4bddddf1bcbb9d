#!/usr/bin/env bash
# The driver image run as the DaemonSet says, inside ONE boot of a real Debian kernel (role k61)
# under qemu TCG: the node is a small real host (as lifecycle-vm.sh's: the kernel's module tree,
# headers, image; qemu's e1000 NIC 8086:100e at 0000:00:03.0 is the device the test driver
# set's agent_test_nic drives) plus crun, Debian's OCI runtime; the pod is the image's root
# filesystem (`podman create` + `podman export` of container/build-image.sh's node variant,
# built for k61's headers) with the OCI spec image-pod.py makes from
# container/deploy/base/daemonset.yaml itself (hostPath volumes -> bind mounts with readOnly and
# mountPropagation, env, command, args, privileged, hostNetwork/hostPID, the probes' commands,
# preStop, terminationGracePeriodSeconds). The VM's /init plays the kubelet:
#   before     no pod yet: the readinessProbe command (in a container of the pod's spec) fails
#   first      the pod starts; the readinessProbe (`crun exec`, exit code) every 0.5 s: it fails
#              until the status says ready, then passes; the NIC bound to agent_test_nic, the
#              live build ids (/sys/module/<m>/notes) the manifest's and the image's files';
#              status.json and the NFD labels carry the manifest's sources version and digest;
#              firmware copies and firmware_class.path written through the nested writable
#              mounts; what the container sees of /host (read-only, nested mounts)
#   stop       preStop (if the manifest has one), SIGTERM, the grace period: exit 0, the ready
#              file gone, phase stopping, the modules still loaded
#   restart    the pod again: ready on the fast path, nothing reinserted (the driver's probe
#              line is not in the kernel log again)
#   killed     SIGKILL (a pod whose preStop never ran): the ready file stays, and the
#              readinessProbe still fails (no live agent holds the state)
#   tampered   the modules unloaded, one bundle file changed in the image's root: refused,
#              bundle_manifest_mismatch, nothing loaded, the probe fails
# image-check.py asserts on the serial console; expected values come from the image's files
# (sha256, readelf build ids), its manifest and sysfs, not from the agent's status alone.
#
#   image-vm.sh [-i IMAGE] [-l LOG] [ABI]    ABI default k61
#     -i IMAGE  an image already built (default: container/build-image.sh -k ABI node, cached)
# Exit 0 all passed, 1 some failed, 2 bad setup. Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
NIC_BDF=0000:00:03.0
DAEMONSET=$REPO/container/deploy/base/daemonset.yaml

die() { echo "image-vm: $*" >&2; exit 2; }
usage="usage: image-vm.sh [-i IMAGE] [-l LOG] [ABI]"
image="" log=""
while getopts "i:l:" opt; do
  case $opt in
    i) image=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || die "$usage"
target=${1:-k61}
[[ $(id -u) -eq 0 ]] || die "needs root (podman, mmdebstrap)"
command -v podman >/dev/null || die "no podman (tests/setup.sh installs it)"
command -v crun >/dev/null || die "no crun (tests/setup.sh installs it)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
python3 -c 'import yaml' 2>/dev/null || die "no PyYAML (python3-yaml)"
start_all=$SECONDS

bash "$HERE/fetch-kernels.sh" "$target" >&2 || die "fetch-kernels.sh $target failed"
abi=$(vm_abi "$target") || die "no kernel for $target"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
if [[ -z $image ]]; then
  t=$SECONDS
  image=$(bash "$REPO/container/build-image.sh" -k "$abi" node) || die "container/build-image.sh failed"
  echo "image-vm: image $image ready in $((SECONDS - t)) s" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-image-vm.XXXXXX")
cid=""
cleanup() { [[ -z $cid ]] || podman rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
root=$work/root

# ---- the pod: the image's root filesystem and the manifest's spec ------------------------------
pod=$root/pod
mkdir -p "$pod/rootfs"
cid=$(podman create "$image") || die "podman create $image failed"
podman export "$cid" | tar -x -C "$pod/rootfs" || die "podman export $image failed"
podman rm "$cid" >/dev/null
cid=""
podman image inspect "$image" >"$work/image.json"
python3 "$HERE/image-pod.py" "$DAEMONSET" "$work/image.json" "$pod" >"$work/pod-summary.json" || die "image-pod.py failed"
bundle=$pod/rootfs/opt/lib/modules/$kver
[[ -f $bundle/bundle-manifest.json ]] || die "the image has no bundle for $kver with a manifest ($bundle)"
image_agent=$pod/rootfs/usr/local/bin/agent
[[ -x $image_agent ]] || die "the image has no /usr/local/bin/agent"
rootfs_mib=$(du -sm "$pod/rootfs" | cut -f1)

# ---- the node: a small real host of the kernel, crun, no agent of its own ----------------------
# (vm_host_root copies an agent and its libraries: the image's, then the agent is removed - the
# node's libraries stay, as a host has them.)
vm_host_root "$root" "$kdir" "$image_agent" e1000 crc32_generic dummy loop fat
rm -f "$root/usr/local/bin/agent"
cp /usr/bin/crun "$root/usr/bin/crun"
ldd /usr/bin/crun | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
# The checker's expectations, from the image's own files.
buildid() { readelf -n "$1" | awk '/Build ID:/ { print $3 }'; }
: >"$work/expected"
while read -r ko; do
  echo "FILE $(basename "$ko" .ko) $(sha256sum "$ko" | cut -d' ' -f1) $(buildid "$ko") ${ko#"$pod/rootfs"}" >>"$work/expected"
done < <(find "$bundle" -name '*.ko' | sort)
victim=$(find "$bundle" -name 'agent_test_nic.ko' | head -n 1)
[[ -n $victim ]] || die "no agent_test_nic.ko in the image's bundle"

cat >"$root/init" <<INIT
#!/bin/sh
NIC=$NIC_BDF
VICTIM=${victim#"$root"}
INIT
cat >>"$root/init" <<'INIT'
export PATH=/bin:/usr/bin:/usr/local/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
dmesg -n 1
dmesg -c >/dev/null
. /pod/pod.env
SD=/run/intel-gpu-driver
NFD=/etc/kubernetes/node-feature-discovery/features.d
CRUN="crun --cgroup-manager=disabled --root=/run/crun"
echo "IVM BEGIN $(uname -r)"
echo "FACT boot boot_id=$(cat /proc/sys/kernel/random/boot_id)"

now() { read -r u _ </proc/uptime; echo "$u"; }
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
buildid() { od -An -tx1 -v "/sys/module/$1/notes/.note.gnu.build-id" 2>/dev/null | tr -d ' \n' | tail -c 40; }
live() { [ -d "/sys/module/$1" ] && echo 1 || echo 0; }
snap() { if [ -f $SD/status.json ]; then echo "SNAP $1 $(tr '\n' ' ' <$SD/status.json)"; else echo "SNAP $1 -"; fi; }
facts() {
  echo "FACT $1 ready=$([ -e $SD/ready ] && echo 1 || echo 0) driver=$(driver)" \
    "helper=$(live agent_test_helper) nic=$(live agent_test_nic)" \
    "helper_id=$(buildid agent_test_helper) nic_id=$(buildid agent_test_nic)" \
    "fwpath=$(cat /sys/module/firmware_class/parameters/path)"
}
phase() { sed -n 's/.*"phase": *"\([^"]*\)".*/\1/p' $SD/status.json 2>/dev/null | head -n 1; }
dump() { dmesg -c | sed "s/^/DMESG $1 /"; }

# The kubelet before the container: each hostPath checked (Directory) or made (DirectoryOrCreate).
for hp in $HOSTPATHS; do
  t=${hp%%:*} p=${hp#*:}
  case $t in
    DirectoryOrCreate) mkdir -p "$p" ;;
    Directory) [ -d "$p" ] || echo "HOSTPATH missing $p" ;;
  esac
done

# probe TAG: the readinessProbe as the kubelet runs it, `exec` in the running container, its
# exit code; the state right after it
probe() {
  timeout 10 $CRUN exec pod $READINESS >/tmp/probe.out 2>&1; rc=$?
  echo "PROBE $1 rc=$rc ready=$([ -e $SD/ready ] && echo 1 || echo 0) phase=$(phase) t=$(now) out=$(head -c 300 /tmp/probe.out | tr '\n' ' ')"
}
# probe_nopod TAG: the same command in a container of the pod's spec (no pod runs to exec in)
probe_nopod() {
  timeout 20 $CRUN run --no-pivot -b /pod/probe probe >/tmp/probe.out 2>&1; rc=$?
  $CRUN delete -f probe >/dev/null 2>&1
  echo "PROBE $1 rc=$rc ready=$([ -e $SD/ready ] && echo 1 || echo 0) phase=$(phase) t=$(now) out=$(head -c 300 /tmp/probe.out | tr '\n' ' ')"
}
start_pod() { # start_pod TAG: the container, in the background (POD_PID: crun's)
  $CRUN run --no-pivot -b /pod pod >"/tmp/pod-$1.log" 2>&1 &
  POD_PID=$!
  echo "START $1 t=$(now)"
  n=0
  while [ $n -lt 100 ] && ! $CRUN state pod 2>/dev/null | grep -q '"status": *"running"'; do sleep 0.1; n=$((n + 1)); done
}
# until_ready TAG SECONDS: the probe every 0.5 s until it passes (the kubelet's period is longer:
# this only samples the transition more finely)
until_ready() {
  n=0
  while [ $n -lt $(($2 * 2)) ]; do
    probe "$1"
    [ $rc -eq 0 ] && break
    kill -0 $POD_PID 2>/dev/null || { echo "DIED $1"; break; }
    sleep 0.5; n=$((n + 1))
  done
}
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# stop_pod TAG SIGNAL: as the kubelet stops a container: preStop, then SIGNAL, SIGKILL after the
# grace period
stop_pod() {
  T=$(now)
  if [ "$2" = TERM ] && [ -n "$PRESTOP" ]; then timeout "$GRACE" $CRUN exec pod $PRESTOP; echo "PRESTOP $1 rc=$?"; fi
  $CRUN kill pod "$2"
  n=0
  while alive $POD_PID && [ $n -lt $((GRACE * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  if alive $POD_PID; then $CRUN kill pod KILL; wait $POD_PID; echo "EXIT $1 hung t0=$T t=$(now)"; else wait $POD_PID; echo "EXIT $1 $? t0=$T t=$(now)"; fi
  $CRUN delete -f pod >/dev/null 2>&1
}
plog() { sed "s/^/LOG $1 /" "/tmp/pod-$1.log"; }
nfd() { if [ -f "$NFD/intel-gpu-driver" ]; then sed "s/^/NFD $1 /" "$NFD/intel-gpu-driver"; else echo "NFD $1 -"; fi; }

# before: no pod, no state
facts before
probe_nopod before

# first: the pod starts; the probe until it passes
start_pod first
until_ready first 240
snap first; facts first; nfd first
ls /var/lib/intel-gpu-driver/firmware 2>/dev/null | sed 's/^/FWDIR first /'
# What the container sees: /host read-only, the nested mounts writable.
$CRUN exec pod /bin/sh -c '
  for p in /host /host/var/lib/intel-gpu-driver /host/sys/module/firmware_class/parameters /host/sys /run/intel-gpu-driver; do
    if touch "$p/.image-vm-w" 2>/dev/null; then rm -f "$p/.image-vm-w"; echo "MOUNT $p writable"; else echo "MOUNT $p read-only"; fi
  done
  [ -w /host/sys/module/firmware_class/parameters/path ] && echo "MOUNT fwpath-param writable" || echo "MOUNT fwpath-param read-only"
  grep -E " /(host|run/intel-gpu-driver)[^ ]* " /proc/self/mountinfo | sed "s/^/MOUNTINFO /"' 2>&1
dump first

# stop: preStop + SIGTERM within the grace period
stop_pod stop TERM
snap stop; facts stop
plog first; dump stop

# restart: the fast path
start_pod restart
until_ready restart 240
snap restart; facts restart; nfd restart
dump restart

# killed: SIGKILL, no preStop, no SIGTERM handler ran
stop_pod killed KILL
snap killed; facts killed
probe_nopod killed
plog restart; dump killed

# tampered: the modules out, one bundle file changed
rmmod agent_test_nic agent_test_helper; echo "RMMOD rc=$?"
printf 'x' >>"/pod/rootfs$VICTIM"
rm -f $SD/ready
start_pod tampered
n=0
while [ "$(phase)" != refused ] && [ $n -lt 1200 ] && alive $POD_PID; do sleep 0.1; n=$((n + 1)); done
probe tampered
snap tampered; facts tampered
stop_pod tampered TERM
plog tampered; dump tampered

echo "IVM END"
poweroff -f
INIT
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-900}
serial=$work/serial.log
echo "image-vm: booting $kver with a $(($(stat -c %s "$work/initrd.cpio") / 1048576)) MiB initramfs" \
  "(the image's root $rootfs_mib MiB; timeout ${timeout_s}s)" >&2
t=$SECONDS
vm_boot image-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "" -m 2048 -nic user,model=e1000 || true
vm_s=$((SECONDS - t))
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 "$HERE/image-check.py" "$serial.txt" "$NIC_BDF" "$kver" "$bundle/bundle-manifest.json" "$work/expected" \
  "$work/pod-summary.json" "$vm_s" "$((SECONDS - start_all))"
