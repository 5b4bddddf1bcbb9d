#!/bin/sh
# lifecycle-vm.sh's /init: the agent's entrypoint through its scenarios (see lifecycle-vm.sh),
# on the live /sys, /proc and /dev. Env (/e2e/env.sh): NIC.
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
init_busybox
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null # lockdown
mkdir -p "$NFD"
echo "LCVM BEGIN $(uname -r)"
echo "FACT boot boot_id=$(cat /proc/sys/kernel/random/boot_id)"

# The watcher: through every scenario, a ready file in a state directory is only ever seen
# while its status says ready (checked as status, ready file, status: a change in between is
# not counted against it).
watcher() {
  checks=0 bad=0
  while [ ! -e /tmp/watch.stop ]; do
    for d in /run/intel-gpu-driver /run/igd-*; do
      [ -f "$d/ready" ] || continue
      p1=$(grep -o '"phase" *: *"[a-z-]*"' "$d/status.json" 2>/dev/null)
      [ -f "$d/ready" ] || continue
      p2=$(grep -o '"phase" *: *"[a-z-]*"' "$d/status.json" 2>/dev/null)
      checks=$((checks + 1))
      case "$p1$p2" in *'"ready"'*) ;; *) bad=$((bad + 1)); echo "WATCHBAD $d $p1 $p2" ;; esac
    done
    sleep 0.2
  done
  echo "WATCH checks=$checks bad=$bad"
}
watcher &
WATCHER=$!

# first-load: the entrypoint as the container runs it
facts pre
start first --nfd-dir "$NFD"
wait_ready first 180
snap first; facts first; nfd first
ls -R /var/lib/intel-gpu-driver/firmware 2>/dev/null | sed 's/^/FWDIR first /'
dump first

# second-agent: the lock is held
timeout 60 agent run --nfd-dir "$NFD" >/tmp/agent-second.log 2>&1; echo "EXIT second $?"
facts second
alog second; dump second

# sigterm: ready removed, modules stay
stop sigterm TERM
snap sigterm; facts sigterm
alog first; dump sigterm

# restart: the fast path
start restart --nfd-dir "$NFD"
wait_ready restart 180
snap restart; facts restart; nfd restart
dump restart

# rmmod while ready: the ready file goes within 5 s (gone, or made again: another inode)
if [ -e $SD/ready ]; then
  ino=$(stat -c %i $SD/ready)
  T=$(now)
  rmmod agent_test_nic; echo "RMMOD rc=$?"
  n=0
  while [ "$(stat -c %i $SD/ready 2>/dev/null)" = "$ino" ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n + 1)); done
  echo "GONE rmmod $([ "$(stat -c %i $SD/ready 2>/dev/null)" = "$ino" ] && echo 0 || echo 1) t0=$T t=$(now)"
  snap rmmod-now
  sleep 3
  facts rmmod-before; snap rmmod-later; facts rmmod # the kernel's state on both sides of the snapshot
else
  echo "GONE rmmod skipped: not ready"
fi
stop rmmod TERM
alog restart; dump rmmod

# unload: everything undone, the firmware path as before
unload unload
facts unload; nfd unload
alog unload; dump unload

# changed-kabi: the k61_old build: a build is needed and possible, and building is off
start changed --bundle /bundles/old --build-mode off
wait_status 180 '"phase" *: *"(waiting-for-build|refused|ready)"'
sleep 1
snap changed; facts changed
stop changed TERM
alog changed; dump changed

# sidecar: the changed-kABI bundle again; the build is the sidecar's, from the cache
start sidecar --bundle /bundles/old --build-mode sidecar --build-timeout 60 --nfd-dir "$NFD"
wait_ready sidecar 180
snap sidecar; facts sidecar; nfd sidecar
stop sidecar TERM
start sidecar2 --bundle /bundles/old --build-mode sidecar --build-timeout 60
wait_ready sidecar2 180
snap sidecar2; facts sidecar2
stop sidecar2 TERM
unload sidecar-unload
facts sidecar-unload
alog sidecar; alog sidecar2; alog sidecar-unload; dump sidecar

# sidecar-fail: the sidecar could not compile these sources; its failure is recorded
start sidefail --bundle /bundles/old --build-mode sidecar --sources /usr/src-broken --build-timeout 60
wait_status 120 '"phase" *: *"refused"'
snap sidefail; facts sidefail
logp=$(tr ',' '\n' <$SD/status.json | sed -n 's/.*"log" *: *"\([^"]*build\.log\)".*/\1/p' | head -n 1)
echo "FACT sidefail-log path=$logp exists=$([ -f "$logp" ] && echo 1 || echo 0) error=$(grep -c 'deliberately broken' "$logp" 2>/dev/null)"
stop sidefail TERM
alog sidefail

# sidecar-wait: nothing was built for these sources
start sidewait --bundle /bundles/old --build-mode sidecar --sources /usr/src-other --build-timeout 5
wait_status 60 '"phase" *: *"waiting-for-build"'
snap sidewait-waiting
wait_status 60 '"phase" *: *"refused"'
snap sidewait; facts sidewait
stop sidewait TERM
alog sidewait

# init-fail: the second module's init fails: the first rolled back
echo "options agent_test_nic fail_init=1" >/etc/modprobe.d/agent-test.conf
start initfail
wait_status 180 '"failure" *: *\{'
sleep 2
snap initfail; facts initfail
dump initfail
rm /etc/modprobe.d/agent-test.conf
T0=$(now); kill -HUP "$AGENT_PID" # wait_ready measures from the SIGHUP
wait_ready initfail-hup 180
snap initfail-hup; facts initfail-hup
stop initfail TERM
unload initfail-unload
facts initfail-unload
alog initfail; alog initfail-unload; dump initfail-hup

# foreign-held: someone else's agent_test_helper, held
insmod /foreign/agent_test_helper.ko; echo "INSMOD foreign-helper $?"
insmod /foreign/agent_test_holder.ko; echo "INSMOD foreign-holder $?"
facts foreign-pre
start foreign --exit-on-refuse
wait_exit foreign 180
snap foreign; facts foreign
alog foreign; dump foreign
rmmod agent_test_holder; rmmod agent_test_helper
facts foreign-clean

# intree-swap: the kernel's own agent_test_helper (another build), loaded and unused: removed
# before loading (recorded), inserted again by agent unload
insmod "/lib/modules/$(uname -r)/updates/agent_test_helper.ko"; echo "INSMOD intree-helper $?"
facts swap-pre
start swap
wait_ready swap 180
snap swap; facts swap
stop swap TERM
unload swap-unload
facts swap-unload
alog swap; alog swap-unload; dump swap
rmmod agent_test_helper

# ro-state: an unwritable state directory
mkdir -p /run/ro-state
mount -t tmpfs -o ro tmpfs /run/ro-state
start rostate --state-dir /run/ro-state
wait_exit rostate 60
echo "FACT rostate-dir dir=$([ -d /run/ro-state ] && echo 1 || echo 0)"
echo "FACT rostate-files $(ls -A /run/ro-state | tr '\n' ' ')"
facts rostate
alog rostate; dump rostate

# fw-conflict: someone else's firmware path is kept
printf /elsewhere >$FWP
start fwconflict
wait_ready fwconflict 180
wait_status 30 '"firmware" *: *\{'
snap fwconflict; facts fwconflict
stop fwconflict TERM
unload fwconflict-unload
facts fwconflict-unload
alog fwconflict; alog fwconflict-unload; dump fwconflict

# ---- faults: the node is never left with a lie -------------------------------------------
# early-hup: a SIGHUP in the agent's first instant is a decision made again, never a death;
# then a killed agent's ready file is stale: the readiness probe fails
agent run --nfd-dir "$NFD" >/tmp/agent-earlyhup.log 2>&1 &
AGENT_PID=$!
# as soon as the agent blocks its signals (SigBlk has SIGHUP, bit 1): main's first act; a
# signal before that (the dynamic loader's instant after exec) has its default action, which a
# container's PID 1 - the agent as ENTRYPOINT - never gets from inside its namespace anyway
while ! grep -qE '^SigBlk:.*[13579bdf]$' "/proc/$AGENT_PID/status" 2>/dev/null && alive "$AGENT_PID"; do :; done
echo "FACT earlyhup-mask lock=$([ -e /run/intel-gpu-driver/agent.lock ] && echo 1 || echo 0)"
kill -HUP "$AGENT_PID"
T0=$(now)
echo "START earlyhup pid=$AGENT_PID t=$T0 args=run (SIGHUP at once)"
# the SIGHUP makes a second decision (the log says so); ready once that one is
n=0
while ! grep -q "deciding again" /tmp/agent-earlyhup.log && [ $n -lt 1800 ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
wait_status 180 '"phase" *: *"ready"'
wait_ready earlyhup 60
snap earlyhup; facts earlyhup
agent ready >/tmp/probe.out 2>&1; echo "EXIT probe-live $?"; sed 's/^/LOG probe-live /' /tmp/probe.out
kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT earlyhup-kill $?"
facts stale
agent ready >/tmp/probe.out 2>&1; echo "EXIT probe-stale $?"; sed 's/^/LOG probe-stale /' /tmp/probe.out
alog earlyhup

# kill9-init: agent_test_nic sleeps 6 s in its init; the agent is killed (-9) while the kernel
# runs it: the module ends up live though its insert call never returned. The restart adopts it
# from the journal's intended entry; agent unload removes it.
echo "options agent_test_nic init_delay_ms=6000" >/etc/modprobe.d/agent-test.conf
unload kill9-pre
start kill9 --nfd-dir "$NFD"
n=0
while [ ! -d /sys/module/agent_test_nic ] && [ $n -lt 1800 ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
echo "FACT kill9-window initstate=$(cat /sys/module/agent_test_nic/initstate 2>/dev/null || echo -)"
echo "JOURNAL kill9 $(tr '\n' ' ' <$SD/undo.json 2>/dev/null)"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT kill9 $?"
n=0
while [ "$(cat /sys/module/agent_test_nic/initstate 2>/dev/null)" != live ] && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
facts kill9
rm /etc/modprobe.d/agent-test.conf
start kill9-restart --nfd-dir "$NFD"
wait_ready kill9-restart 180
snap kill9-restart; facts kill9-restart
stop kill9-restart TERM
unload kill9-unload
facts kill9-unload
alog kill9; alog kill9-restart; alog kill9-unload; dump kill9

# ready-dir: the ready file is a directory with something in it: it goes first, whatever it is
mkdir -p $SD/ready/sub && touch $SD/ready/sub/file
start readydir --bundle /bundles/old --build-mode off
wait_status 120 '"phase" *: *"refused"'
snap readydir; facts readydir
echo "FACT readydir-kind kind=$(if [ -e $SD/ready ] || [ -L $SD/ready ]; then stat -c %F $SD/ready | tr ' ' _; else echo none; fi)"
agent ready >/tmp/probe.out 2>&1; echo "EXIT probe-readydir $?"
stop readydir TERM
alog readydir

# deep-journal: undo.json of this boot nested 100,000 levels deep: the entrypoint stays up,
# refused, naming the file; agent unload and --check say so and exit 2; removed + SIGHUP: ready
awk -v id="$(cat /proc/sys/kernel/random/boot_id)" 'BEGIN { printf "{\"boot_id\":\"%s\",\"inserted\":", id;
  for (i = 0; i < 100000; i++) printf "["; for (i = 0; i < 100000; i++) printf "]"; print "}" }' >$SD/undo.json
start deepjournal --nfd-dir "$NFD"
wait_status 120 '"phase" *: *"refused"'
snap deepjournal; facts deepjournal
timeout 60 agent unload >/tmp/agent-deep-unload.log 2>&1; echo "EXIT deep-unload $?"
timeout 60 agent --check >/dev/null 2>/tmp/agent-deep-check.log; echo "EXIT deep-check $?"
rm $SD/undo.json
T0=$(now); kill -HUP "$AGENT_PID"
wait_ready deepjournal-hup 180
snap deepjournal-hup; facts deepjournal-hup
stop deepjournal TERM
unload deep-unload2
alog deepjournal; alog deep-unload; alog deep-check

# forged-journal: a journal of this boot naming what the agent never did: a loaded module with
# no build id, a restore path outside the kernel's tree, someone's file as the NFD file, a
# firmware path outside the agent's directory. agent unload touches none of it (exit 1).
modprobe dummy; echo "INSMOD dummy $?"
echo victim >/tmp/victim
printf '%s' "$(cat $FWP)" >/tmp/fwp-before
cat >$SD/undo.json <<JOURNAL
{"schema": 2, "boot_id": "$(cat /proc/sys/kernel/random/boot_id)",
 "inserted": [{"name": "dummy", "build_id": "", "state": "done"}],
 "removed": [{"name": "loop", "restore_path": "/tmp/loop.ko", "state": "done"}],
 "source": "prebuilt", "firmware_previous_path": "/anything", "firmware_path": "/tmp/notours",
 "firmware_state": "done", "nfd_file": "/tmp/victim"}
JOURNAL
timeout 60 agent unload --nfd-dir "$NFD" --json >/tmp/unload.out 2>/tmp/agent-forged.log; echo "EXIT forged $?"
echo "SNAP forged $(tr '\n' ' ' </tmp/unload.out)"
echo "FACT forged dummy=$(live dummy) loop=$(live loop) victim=$([ -f /tmp/victim ] && echo 1 || echo 0)" \
  "fwp_same=$([ "$(cat $FWP)" = "$(cat /tmp/fwp-before)" ] && echo 1 || echo 0)"
rm -f $SD/undo.json; rmmod dummy
alog forged

# fs-full: the state directory's filesystem fills after the agent is ready; the driver is lost
# and SIGHUP asks for a new decision: nothing may be inserted without a record; freed: ready
mkdir -p /run/igd-full; mount -t tmpfs -o size=256k tmpfs /run/igd-full
SD=/run/igd-full
start fsfull --state-dir /run/igd-full
wait_ready fsfull 180
dd if=/dev/zero of=/run/igd-full/fill bs=4096 2>/dev/null; echo "FACT fsfull-fill free=$(df -k /run/igd-full | awk 'NR==2 {print $4}')"
rmmod agent_test_nic; rmmod agent_test_helper
sleep 2
kill -HUP "$AGENT_PID"
sleep 8
echo "FACT fsfull-alive alive=$(alive "$AGENT_PID" && echo 1 || echo 0)"
facts fsfull
rm /run/igd-full/fill
T0=$(now); kill -HUP "$AGENT_PID"
wait_ready fsfull-hup 180
snap fsfull-hup; facts fsfull-hup
stop fsfull TERM
timeout 60 agent unload --state-dir /run/igd-full >/dev/null 2>&1; echo "EXIT fsfull-unload $?"
facts fsfull-unload
alog fsfull
SD=/run/intel-gpu-driver

# broken-cache: each broken copy of the sidecar's entry is that file's named error, never a
# crash and never "is the sidecar running?"
for v in modules-string file-escape kernel-number failed-type deep; do
  SD=/run/igd-bc-$v
  start "bc-$v" --bundle /bundles/old --build-mode sidecar --build-cache "/var/lib/igd-broken-$v/builds" \
    --build-timeout 3 --state-dir "$SD"
  wait_status 120 '"phase" *: *"refused"'
  snap "bc-$v"; facts "bc-$v"
  stop "bc-$v" TERM
  alog "bc-$v"
done
SD=/run/intel-gpu-driver

# dtk: the node without headers of its own; a Driver Toolkit image's decide
H=$(readlink -f "/lib/modules/$(uname -r)/build")
mv "$H" "$H.hidden"
for v in other renamed good; do
  agent --check --bundle /bundles/old --image-headers "/dtk-$v" --json >"/tmp/dtk-$v.json" 2>"/tmp/agent-dtk-$v.log"
  echo "EXIT dtk-$v $?"
  echo "SNAP dtk-$v $(tr '\n' ' ' <"/tmp/dtk-$v.json")"
  alog "dtk-$v"
done
mv "$H.hidden" "$H"

# enforced: module signatures enforced from now on: a build's unsigned modules would be refused
echo 1 >/sys/module/module/parameters/sig_enforce
echo "FACT enforce on=$(cat /sys/module/module/parameters/sig_enforce)"
start enforced --bundle /bundles/old --build-mode sidecar --build-timeout 30
wait_status 120 '"phase" *: *"refused"'
snap enforced; facts enforced
stop enforced TERM
alog enforced; dump enforced
grep -m 3 -E '^(\.builtin_trusted_keys|\.secondary_trusted_keys|\.machine|\.platform)|keyring' /proc/keys | sed 's/^/LOG keys /'
start untrusted --bundle /bundles/old --build-mode sidecar --build-timeout 30 --signing-cert /keys/signing.crt
wait_status 120 '"phase" *: *"refused"'
snap untrusted; facts untrusted
stop untrusted TERM
alog untrusted

touch /tmp/watch.stop; wait "$WATCHER"
echo "LCVM END"
poweroff -f
