#!/bin/sh
# kmod-vm.sh's /init: the test driver set inserted by the kernel itself, no agent; it prints
# its own PASS/FAIL lines. Env (/e2e/env.sh): NIC, FW_SIZE, FW_LINE (the firmware's size and
# first line).
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
init_busybox
echo "KMODVM BEGIN $(uname -r)"
ok() { if [ "$1" = 0 ]; then echo "PASS $2"; else echo "FAIL $2"; fi; }
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
e=$(rem agent_test_nic); dump rmmod-nic
ok "$([ "$e" = 0 ] && [ "$(driver)" = - ] && echo 0)" "agent_test_nic removed (errno $e), $NIC unbound ($(driver))"

printf /fw >$FWP
e=$(ins /m/same/agent_test_nic.ko); wait_bound agent_test_nic
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG same-fw /'
ok "$([ "$e" = 0 ] && [ "$(driver)" = agent_test_nic ] && echo 0)" "agent_test_nic again with firmware_class.path=/fw: errno $e, bound to $(driver)"
ok "$(echo "$d" | grep -qF "agent_test_nic $NIC: firmware agent-test/agent_test_nic.bin: $FW_SIZE bytes: $FW_LINE" && echo 0)" \
  "the driver logs the firmware's size ($FW_SIZE) and first line"
e=$(rem agent_test_nic); dump rmmod-nic2

out=$(insmod /m/same/agent_test_nic.ko fail_init=1 2>&1); rc=$?
d=$(dmesg -c); echo "$d" | sed 's/^/DMESG fail-init /'
echo "INSMOD fail_init=1: rc=$rc: $out"
ok "$([ $rc != 0 ] && echo "$out" | grep -q "No such device or address" && echo "$d" | grep -q "fail_init=1" && echo 0)" \
  "insmod agent_test_nic.ko fail_init=1 fails with ENXIO ($out)"
ok "$([ ! -d /sys/module/agent_test_nic ] && echo 0)" "agent_test_nic not live after its failed init"
e=$(rem agent_test_helper); dump rmmod-helper
ok "$([ "$e" = 0 ] && echo 0)" "the bundle's agent_test_helper removed (errno $e)"

e1=$(ins /m/foreign/agent_test_helper.ko); e2=$(ins /m/foreign/agent_test_holder.ko); dump foreign
ok "$([ "$e1/$e2" = 0/0 ] && [ -e /sys/module/agent_test_helper/holders/agent_test_holder ] && echo 0)" \
  "foreign helper + holder inserted ($e1, $e2), holders: $(ls /sys/module/agent_test_helper/holders)"
e=$(rem agent_test_helper); dump rmmod-held
ok "$([ "$e" = 11 ] && echo 0)" "the held foreign helper cannot be removed (errno $e, EAGAIN=11 with O_NONBLOCK)"
e=$(ins /m/same/agent_test_helper.ko); dump same-over-foreign
ok "$([ "$e" = 17 ] && echo 0)" "the bundle's helper refused while the foreign one is live (errno $e, EEXIST=17)"
for n in agent_test_holder agent_test_helper; do
  echo "BUILDID live-$n $(live_id $n)"
done
echo "KMODVM END"
poweroff -f
