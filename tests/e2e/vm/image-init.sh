#!/bin/sh
# image-vm.sh's /init: the kubelet's part (see image-vm.sh): the driver image's pod run with crun
# as the DaemonSet says. Env (/e2e/env.sh): NIC, VICTIM (the bundle file the tampered scenario
# changes); /pod/pod.env (image-pod.py): HOSTPATHS, READINESS, PRESTOP, GRACE.
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
init_busybox
mount -t cgroup2 cgroup2 /sys/fs/cgroup # crun reads the cgroup mode even with no cgroup manager
# shellcheck source=/dev/null
. /pod/pod.env
CRUN="crun --cgroup-manager=disabled --root=/run/crun"
echo; echo "IVM BEGIN $(uname -r)" # (the console's escape codes end the line before)
echo "FACT boot boot_id=$(cat /proc/sys/kernel/random/boot_id)"

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
  for p in /host /host/var/lib/intel-gpu-driver /run/intel-gpu-driver /etc/kubernetes/node-feature-discovery/features.d; do
    if touch "$p/.image-vm-w" 2>/dev/null; then rm -f "$p/.image-vm-w"; echo "MOUNT $p writable"; else echo "MOUNT $p read-only"; fi
  done
  # sysfs takes no new files: access(2) says whether the mount lets the parameter be written
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
printf x >>"$VICTIM"
start_pod tampered
n=0
while [ "$(phase)" != refused ] && [ $n -lt 600 ] && alive $POD_PID; do sleep 0.1; n=$((n + 1)); done
probe tampered
snap tampered; facts tampered
stop_pod tampered TERM
plog tampered; dump tampered

echo "IVM END"
poweroff -f
