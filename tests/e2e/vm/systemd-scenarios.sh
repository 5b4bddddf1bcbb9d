#!/bin/bash
# systemd-vm.sh's scenarios (see there), run by sdvm-check.service after the unit's start at
# boot; its output goes to the serial console. Env (/e2e/env.sh): NIC, PREV_KVER, OLD_KVER.
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
U=intel-gpu-driver.service
PROPS=ActiveState,SubState,Result,StatusText,NRestarts,MainPID,ExecMainStatus,ExecMainCode,ActiveEnterTimestampMonotonic,ExecMainStartTimestampMonotonic,Type,NotifyAccess
echo "SDVM BEGIN $(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
show() { systemctl show -p "$PROPS" "$U" | sed "s/^/SHOW $1 /"; }
unit_facts() { facts "$1" "isactive=$(systemctl is-active $U)"; }
probe() { r=$(agent ready 2>&1); echo "RC ready-$1 $? $r"; } # the readiness probe, as a script would use it
journal() { journalctl -b -u "$U" -o cat --no-pager 2>&1 | tail -n 40 | sed "s/^/JOURNAL $1 /"; }

# ---- boot: the unit was started by multi-user.target; this service runs after it -------------
sed 's/^/AT /' /run/sdvm/start-done 2>/dev/null || echo "AT STARTDONE none"
show boot
unit_facts boot
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
unit_facts stop
probe stop
journal stop

# ---- restart, then the driver lost while ready -------------------------------------------------
timeout 120 systemctl start "$U"; echo "RC restart $?"
show restart
unit_facts restart
rmmod agent_test_nic; echo "RC rmmod $?"
n=0
while [ $n -lt 100 ] && ! systemctl show -p StatusText --value "$U" | grep -q '^refused: no longer ready'; do
  sleep 0.1; n=$((n + 1))
done
show lost
unit_facts lost
echo "ISACTIVE lost $(systemctl is-active $U)"
timeout 60 systemctl stop "$U"; echo "RC stop-lost $?"
journal lost

# ---- unload: the modules go, so that the next bundle is a fresh start ---------------------------
agent unload >/tmp/unload.log 2>&1; echo "RC unload $?"
sed 's/^/LOG unload /' /tmp/unload.log
unit_facts unload

# ---- refused: the changed-kABI build, no headers, no compiler ---------------------------------
mkdir -p /bundles/good
mv "/opt/lib/modules/$PREV_KVER" /bundles/good/
mv /bundles/old "/opt/lib/modules/$OLD_KVER"
: >/run/sdvm/start-done
T0=$(cut -d' ' -f1 /proc/uptime)
timeout 300 systemctl start "$U"; echo "RC refused-start $? t=$T0..$(cut -d' ' -f1 /proc/uptime)"
sed 's/^/AT /' /run/sdvm/start-done
show refused
unit_facts refused
echo "ISACTIVE refused $(systemctl is-active $U)"
probe refused
systemctl status --no-pager -n 0 "$U" 2>&1 | sed 's/^/STATUS refused /'
sleep 10
show refused-later
journal refused

# ---- stop again ---------------------------------------------------------------------------------
timeout 60 systemctl stop "$U"; echo "RC stop2 $?"
show stop2
unit_facts stop2

echo "SDVM END uptime=$(cut -d' ' -f1 /proc/uptime)"
systemctl --force --force poweroff
