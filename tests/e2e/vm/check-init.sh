#!/bin/sh
# check-vm.sh's /init: `agent --check` on three bundles, then the inserts the kernel judges.
# Env (/e2e/env.sh): NIC, PREV, OLD (the bundles' ABIs), PREV_KVER.
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
init_busybox
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null # lockdown
echo "CHECKVM BEGIN $(uname -r)"
check() { # check NAME AGENT-ARGS...: the text run, then the JSON run
  name=$1
  shift
  t0=$(date +%s)
  agent --check "$@" >/tmp/out 2>/tmp/err
  rc=$?
  t1=$(date +%s)
  sed "s/^/OUT $name /" /tmp/out
  sed "s/^/ERR $name /" /tmp/err
  echo "CHECK $name exit=$rc seconds=$((t1 - t0))"
  agent --check --json "$@" >/tmp/out 2>/tmp/err
  rc=$?
  sed "s/^/JSON $name /" /tmp/out
  sed "s/^/ERR $name /" /tmp/err
  echo "CHECKJSON $name exit=$rc"
}
insert() { # insert NAME FILE: raw init_module, "INSERT NAME errno=N"
  r=$(tryload insert "$2")
  echo "INSERT $1 $r"
  dump "$1"
}
echo "DRIVER before $NIC $(driver)"
check prebuilt
check changed --bundle "/bundles/e1000-$OLD"
check no-device --bundle "/bundles/i915-$PREV"
insert "e1000-$OLD" "/bundles/e1000-$OLD/e1000.ko"
insert "e1000-$PREV" "/opt/lib/modules/$PREV_KVER/e1000.ko"
i=0
while [ "$(driver)" = - ] && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
if [ "$(driver)" = - ]; then echo "UNBOUND $NIC"; else echo "BOUND $NIC $(driver)"; fi
dump bind
# Which module is that: the kernel's own record of it (no srcversion unless the module has a
# MODULE_VERSION; the build-id note is always there).
m=/sys/module/e1000
[ -d $m ] && echo "LIVE e1000 initstate=$(cat $m/initstate) refcnt=$(cat $m/refcnt) taint=$(cat $m/taint)" \
  "srcversion=$(cat $m/srcversion 2>/dev/null || echo -)" "build_id=$(live_id e1000)"
check after-insert
echo "CHECKVM END"
poweroff -f
