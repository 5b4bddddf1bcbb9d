# shellcheck shell=sh
# The helpers every VM's /init (and systemd-vm.sh's check service) shares, sourced in the VM from
# /e2e/lib.sh after /e2e/env.sh (the host's values: NIC and the script's own). POSIX sh: busybox
# ash runs it in the initramfs VMs, dash or bash in the Debian roots.
# Each helper prints one record a line, "KIND TAG ...", for the checker's serial_log.py.

SD=${SD:-/run/intel-gpu-driver}                       # the agent's state directory
NFD=${NFD:-/etc/kubernetes/node-feature-discovery/features.d}
FWP=/sys/module/firmware_class/parameters/path

# mount_basics: the pseudo file systems an init needs; the kernel's console messages off (they
# are shown per scenario by dump, and would otherwise break the records' lines).
mount_basics() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  mount -t tmpfs tmpfs /run
  dmesg -n 1
  dmesg -c >/dev/null
}

# init_busybox: a busybox initramfs's start: the applets in /bin, the pseudo file systems
init_busybox() {
  export PATH=/bin:/usr/bin:/usr/local/bin
  /bin/busybox --install -s /bin
  mount_basics
}

now() { read -r u _ </proc/uptime; echo "$u"; } # seconds since boot, two decimals
# driver: the driver bound to $NIC, - when none
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
live() { [ -d "/sys/module/$1" ] && echo 1 || echo 0; }
# live_id MODULE: the live module's build id as the kernel holds it (its notes)
live_id() { od -An -tx1 -v "/sys/module/$1/notes/.note.gnu.build-id" 2>/dev/null | tr -d ' \n' | tail -c 40; }
# file_id FILE: a module file's build id
file_id() { readelf -n "$1" 2>/dev/null | awk '/Build ID:/ { print $3 }'; }
# alive PID: running (a zombie, exited but not yet reaped by this shell, is not)
alive() { [ -e "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# facts TAG [WORD...]: what the node looks like now (sysfs, the state directory), and the
# firmware path; WORDs (key=value) are added to the FACT record.
facts() {
  t=$1
  shift
  echo "FACT $t ready=$([ -e "$SD/ready" ] && echo 1 || echo 0) driver=$(driver)" \
    "helper=$(live agent_test_helper) nic=$(live agent_test_nic) holder=$(live agent_test_holder)" \
    "helper_id=$(live_id agent_test_helper) nic_id=$(live_id agent_test_nic)" \
    "helper_refcnt=$(cat /sys/module/agent_test_helper/refcnt 2>/dev/null || echo -)" \
    "lock=$([ -e "$SD/agent.lock" ] && echo 1 || echo 0)" "$@"
  echo "FWPATH $t $(cat $FWP)"
}
# snap TAG [DIR]: status.json of DIR (default $SD) as one line, - when there is none
snap() {
  f=${2:-$SD}/status.json
  if [ -f "$f" ]; then echo "SNAP $1 $(tr '\n' ' ' <"$f")"; else echo "SNAP $1 -"; fi
}
# phase [DIR]: the phase status.json shows
phase() { grep -o '"phase" *: *"[^"]*"' "${1:-$SD}/status.json" 2>/dev/null | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'; }
dump() { dmesg -c | sed "s/^/DMESG $1 /"; } # dump TAG: the kernel's messages since the last dump
alog() { [ -f "/tmp/agent-$1.log" ] && sed "s/^/LOG $1 /" "/tmp/agent-$1.log"; } # alog TAG: its agent's log
nfd() { if [ -f "$NFD/intel-gpu-driver" ]; then sed "s/^/NFD $1 /" "$NFD/intel-gpu-driver"; else echo "NFD $1 -"; fi; }

# start TAG ARGS...: `agent run ARGS` in the background (AGENT_PID), its log /tmp/agent-TAG.log,
# T0 its start
start() {
  tag=$1
  shift
  T0=$(now)
  agent run "$@" >"/tmp/agent-$tag.log" 2>&1 &
  AGENT_PID=$!
  echo "START $tag pid=$AGENT_PID t=$T0 args=$*"
}
# stop TAG [SIGNAL [SECONDS]]: signals the agent (TERM), waits up to SECONDS (60) for its exit,
# then kills it: "EXIT TAG <status>|hung t0=<signal> t=<exit>"
stop() {
  T1=$(now)
  kill -"${2:-TERM}" "$AGENT_PID" 2>/dev/null
  reap "$1" "${3:-60}" "$T1"
}
# wait_exit TAG SECONDS: the agent's own exit, killed after SECONDS
wait_exit() { reap "$1" "$2" "$T0"; }
reap() { # reap TAG SECONDS T: waits for $AGENT_PID, "EXIT TAG <status>|hung t0=T t=<now>"
  n=0
  while alive "$AGENT_PID" && [ $n -lt $(($2 * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  if alive "$AGENT_PID"; then
    kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT $1 hung t0=$3 t=$(now)"
  else
    wait "$AGENT_PID"; echo "EXIT $1 $? t0=$3 t=$(now)"
  fi
}
# wait_ready TAG SECONDS: polls the ready file every 0.1 s: "READY|NOTREADY TAG t0= t="
wait_ready() {
  n=0
  while [ ! -e "$SD/ready" ] && [ $n -lt $(($2 * 10)) ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
  if [ -e "$SD/ready" ]; then echo "READY $1 t0=$T0 t=$(now)"; else echo "NOTREADY $1 t0=$T0 t=$(now)"; fi
}
# own_status PATTERN [DIR]: status.json is this agent's (its pid) and matches PATTERN (grep -E)
own_status() {
  grep -qE "\"pid\" *: *${AGENT_PID}[^0-9]" "${2:-$SD}/status.json" 2>/dev/null &&
    grep -qE "$1" "${2:-$SD}/status.json" 2>/dev/null
}
# wait_status SECONDS PATTERN: until own_status PATTERN, the agent's exit or the time is up
wait_status() {
  n=0
  while ! own_status "$2" && [ $n -lt $(($1 * 10)) ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
}
# follow TAG SECONDS DIR STOP_RE: each phase this agent's status shows ("PHASE TAG p t="), polled
# every 0.5 s, until one matches STOP_RE (grep -E), the agent exits or the time is up:
# "REACHED TAG <phase>|exited|timeout t0= t="
follow() {
  last="" n=0
  while [ $n -lt $(($2 * 2)) ]; do
    if own_status . "$3"; then
      p=$(phase "$3")
      if [ -n "$p" ] && [ "$p" != "$last" ]; then echo "PHASE $1 $p t=$(now)"; last=$p; fi
      if echo "$p" | grep -qE "$4"; then echo "REACHED $1 $p t0=$T0 t=$(now)"; return 0; fi
    fi
    alive "$AGENT_PID" || { echo "REACHED $1 exited t0=$T0 t=$(now)"; return 1; }
    sleep 0.5
    n=$((n + 1))
  done
  echo "REACHED $1 timeout t0=$T0 t=$(now)"
  return 1
}
# unload TAG: `agent unload --json`: "EXIT TAG <status>", its JSON as a SNAP record
unload() {
  timeout 120 agent unload --nfd-dir "$NFD" --json >/tmp/unload.out 2>"/tmp/agent-$1.log"
  echo "EXIT $1 $?"
  echo "SNAP $1 $(tr '\n' ' ' </tmp/unload.out)"
}
