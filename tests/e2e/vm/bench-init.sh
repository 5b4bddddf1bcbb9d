#!/bin/sh
# bench/start-to-ready.sh's /init: in one boot, per bundle, RUNS alternating runs of the floor
# (insmod of the bundle's files in dependency order until the NIC is bound), the agent's first
# load (`agent run` as lifecycle-init.sh starts it, until its ready file exists) and its fast
# path (restarted with the modules live), on the live /sys, /proc and /dev; then one first load
# with no kernel certificates kept from an earlier start (cold). Then, once per
# bundle and start, the same under strace (file opens and module calls, timestamped) or perf
# (cpu-clock samples by library and function).
# Env (/e2e/env.sh): NIC, RUNS, PROFILE (strace, perf or none), SETS ("name:bundle-dir:firmware-dir:module,module..." each,
# space separated; the modules in dependency order).
# Records: "BENCH set kind run seconds", "TIMINGS set kind run {...}", "BAD set kind run why".
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
init_busybox
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null # lockdown, as lifecycle-init.sh
mkdir -p "$NFD"
echo "BENCHVM BEGIN $(uname -r) runs=$RUNS"

bound() { [ -e "/sys/bus/pci/devices/$NIC/driver" ]; }
# poll_ready SECONDS: until the ready file exists (every 10 ms), the agent's exit or the time is up
poll_ready() {
  n=0
  while [ ! -e "$SD/ready" ] && [ $n -lt $(($1 * 100)) ]; do
    sleep 0.01
    n=$((n + 1))
    [ $((n % 50)) -ne 0 ] || alive "$AGENT_PID" || break
  done
  [ -e "$SD/ready" ]
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
timings() { tr -d '\n ' <"$SD/status.json" 2>/dev/null | grep -o '"timings":{[^}]*}' | sed 's/^"timings"://'; }
# agent_start SET KIND RUN ARGS...: agent run ARGS until ready; BENCH and TIMINGS records
agent_start() {
  a_tag="$1 $2 $3" a_log="/tmp/agent-$1-$2-$3.log"
  shift 3
  T0=$(now)
  "$@" >"$a_log" 2>&1 &
  AGENT_PID=$!
  if poll_ready 300; then
    echo "BENCH $a_tag $(secs "$T0" "$(now)")"
    echo "TIMINGS $a_tag $(timings)"
  else
    echo "BAD $a_tag not ready: phase $(phase)"
    snap "$(echo "$a_tag" | tr ' ' -)"
    sed "s/^/LOG $a_tag /" "$a_log"
  fi
}
# clean SET KIND RUN MODULES: nothing of the bundle live, the NIC unbound, else a BAD record
clean() {
  for m in $(echo "$4" | tr ',' ' '); do
    [ "$(live "$m")" = 0 ] || echo "BAD $1 $2 $3 $m still live"
  done
  ! bound || echo "BAD $1 $2 $3 the NIC still bound to $(driver)"
  [ ! -e "$SD/ready" ] || echo "BAD $1 $2 $3 a ready file left"
}

# process start: `agent --version` ten times (the dynamic loader, the libraries, static constructors)
T0=$(now)
for _ in 1 2 3 4 5 6 7 8 9 10; do agent --version >/dev/null; done
echo "STARTUP agent $(secs "$T0" "$(now)")"
T0=$(now)
for _ in 1 2 3 4 5 6 7 8 9 10; do busybox true; done
echo "STARTUP busybox $(secs "$T0" "$(now)")"

for s in $SETS; do
  name=${s%%:*} rest=${s#*:}
  bundle=${rest%%:*} rest=${rest#*:}
  fw=${rest%%:*} mods=${rest#*:}
  args="--bundle $bundle --bundle-firmware $fw"
  drv=${mods##*,} # the driver: the last module
  echo "SET $name bundle=$bundle firmware=$fw modules=$mods"
  clean "$name" pre 0 "$mods"
  i=1
  while [ $i -le "$RUNS" ]; do
    # the floor: the same files by hand, firmware_class.path at the bundle's firmware if any
    [ -z "$(ls -A "$fw")" ] || printf '%s' "$fw" >"$FWP"
    T0=$(now)
    for m in $(echo "$mods" | tr ',' ' '); do insmod "$bundle/$m.ko" || echo "BAD $name floor $i insmod $m failed"; done
    n=0
    while ! bound && [ $n -lt 3000 ]; do sleep 0.01; n=$((n + 1)); done
    if bound; then echo "BENCH $name floor $i $(secs "$T0" "$(now)")"; else echo "BAD $name floor $i not bound"; fi
    echo "BOUND $name floor $i $(driver)"
    [ "$(driver)" = "$drv" ] || echo "BAD $name floor $i the NIC bound to $(driver), not $drv"
    rev=""
    for m in $(echo "$mods" | tr ',' ' '); do rev="$m $rev"; done
    for m in $rev; do rmmod "$m"; done
    echo >"$FWP"
    clean "$name" floor "$i" "$mods"

    # the first load: the entrypoint as the container runs it
    # shellcheck disable=SC2086 # args: words
    agent_start "$name" first "$i" agent run --nfd-dir "$NFD" $args
    echo "BOUND $name first $i $(driver)"
    [ "$(driver)" = "$drv" ] || echo "BAD $name first $i the NIC bound to $(driver), not $drv"
    stop "$name-first-$i" TERM
    # the fast path: restarted with the modules live
    # shellcheck disable=SC2086
    agent_start "$name" fast "$i" agent run --nfd-dir "$NFD" $args
    fp=$(tr -d '\n ' <"$SD/status.json" | grep -o '"fast_path":[a-z]*')
    echo "FAST $name fast $i $fp"
    [ "$fp" = '"fast_path":true' ] || echo "BAD $name fast $i not the fast path: $fp"
    stop "$name-fast-$i" TERM
    unload "$name-unload-$i" >/dev/null
    # the agent's own log of the first run (its lines' times)
    [ "$i" != 1 ] || sed "s/^/ALOG $name first 1 /" "/tmp/agent-$name-first-1.log"
    [ "$i" != 1 ] || sed "s/^/ALOG $name fast 1 /" "/tmp/agent-$name-fast-1.log"
    clean "$name" unload "$i" "$mods"
    dump "$name-$i" | grep -iE 'error|fail|taint|warn' | head -n 5
    i=$((i + 1))
  done

  # a first load without the certificates an earlier start kept (the first start on a new kernel
  # image): the runs above found them kept from run 1 on
  rm -rf /var/lib/intel-gpu-driver/kernel-certificates
  # shellcheck disable=SC2086
  agent_start "$name" cold 1 agent run --nfd-dir "$NFD" $args
  stop "$name-cold-1" TERM
  unload "$name-cold-unload" >/dev/null
  clean "$name" cold 1 "$mods"

  # the diagnosis alone, timed (`agent --check`, the same bundle)
  T0=$(now)
  # shellcheck disable=SC2086
  agent --check $args --json >/tmp/check.json 2>/tmp/check.log
  rc=$? T1=$(now)
  echo "BENCH $name check 1 $(secs "$T0" "$T1")"
  echo "CHECK $name rc=$rc $(tr -d '\n ' </tmp/check.json | grep -o '"decision":"[a-z-]*"')"
  echo "CERTS $name $(tr -d '\n' </tmp/check.json | grep -o '"certificates": *"[^"]*"')"

  # once under perf (cpu-clock samples, user and kernel): where the CPU goes
  if [ "$PROFILE" = perf ] && [ -x /usr/bin/perf ]; then
    for kind in first fast; do
      # shellcheck disable=SC2086
      agent_start "$name" "perf-$kind" 1 perf record -q -e cpu-clock -F 499 -o "/tmp/perf-$name-$kind.data" \
        agent run --nfd-dir "$NFD" $args
      apid=$(tr -d '\n ' <"$SD/status.json" | grep -o '"pid":[0-9]*' | cut -d: -f2)
      kill -TERM "$apid"
      reap "$name-perf-$kind" 60 "$(now)"
      perf report -i "/tmp/perf-$name-$kind.data" --stdio --no-children --sort dso,sym 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 40 | sed "s/^/PERF $name $kind /"
      perf report -i "/tmp/perf-$name-$kind.data" --stdio --no-children --sort dso 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 15 | sed "s/^/PERFDSO $name $kind /"
    done
    unload "$name-perf-unload" >/dev/null
    clean "$name" perf 1 "$mods"
  fi

  # once under strace: each file opened and each module call, timestamped
  if [ "$PROFILE" = strace ] && [ -x /usr/bin/strace ]; then
    for kind in first fast; do
      # shellcheck disable=SC2086
      agent_start "$name" "strace-$kind" 1 strace -f -ttt --seccomp-bpf -e trace=openat,openat2,execve,finit_module,init_module,delete_module,clone,clone3,clock_nanosleep,nanosleep,ppoll,poll,epoll_wait,epoll_pwait \
        -o "/tmp/strace-$name-$kind.txt" agent run --nfd-dir "$NFD" $args
      # strace passes no SIGTERM on: the agent's own pid (its status) is signalled
      apid=$(tr -d '\n ' <"$SD/status.json" | grep -o '"pid":[0-9]*' | cut -d: -f2)
      kill -TERM "$apid"
      reap "$name-strace-$kind" 60 "$(now)"
      sed "s/^/STRACE $name $kind /" "/tmp/strace-$name-$kind.txt"
    done
    unload "$name-strace-unload" >/dev/null
    clean "$name" strace 1 "$mods"
  fi
done
echo "BENCHVM END"
poweroff -f
