#!/usr/bin/env bash
# The agent's entrypoint end to end on a real kernel: boot it ONCE under qemu (TCG) from a
# busybox initramfs that is a small but real host (as check-vm.sh builds it: the agent and its
# shared libraries, pci.ids, the kernel's /lib/modules/<kver> with its indexes and a subset of
# its modules, the `build` link and the headers, /boot/vmlinuz-<kver>, /etc/os-release) plus
# the image's parts: the bundle of the test driver set (tests/fixtures/kmod-src, built for -p,
# the target's kABI) at /opt/lib/modules/<kver of -p>/ and its firmware at /opt/lib/firmware.
# The VM's /init runs the agent as a background process on the live /sys, /proc and /dev
# (/run a tmpfs; no test-only switch) through these scenarios, in this order:
#
#   first-load    `agent run --nfd-dir ...`: ready; agent_test_helper + agent_test_nic live and
#                 inserted by it; 0000:00:03.0 (qemu's e1000) bound to agent_test_nic; the
#                 bundle firmware copied under /var/lib/intel-gpu-driver/firmware/<digest>/ and
#                 firmware_class.path set there (the driver's dmesg line names the firmware's
#                 size); status.json (phase, decision, source, pid, boot id, kernel, devices,
#                 modules, firmware) and the NFD file right
#   second-agent  another agent on the same state dir exits 2 naming the holder's pid
#   sigterm       SIGTERM: exit 0, the ready file gone, phase "stopping", the modules stay
#   restart       `agent run` again: the fast path (nothing reinserted), ready
#   rmmod         someone removes agent_test_nic while ready: the ready file goes within 5 s
#                 and status.event names agent_test_nic
#   unload        `agent unload --json`: exit 0, the modules gone, firmware_class.path back to
#                 what it was before the agent
#   changed-kabi  --bundle with the build for -c (another module_layout) and --build-mode off:
#                 decision build, refused with build_disabled, module_layout named, nothing
#                 loaded, no ready file
#   sidecar       the Driver Toolkit sidecar's role is played before the boot by this machine:
#                 `agent build --root NODE` against a node tree with the target kernel's real
#                 headers packages (node-lib.sh); its cache is the VM's
#                 /var/lib/intel-gpu-driver/builds. The changed-kABI bundle with --build-mode
#                 sidecar: the entry found, checked, loaded (source built, the live build ids
#                 the sidecar's), the NIC bound, ready; restarted: the built set's fast path;
#                 agent unload removes it
#   sidecar-fail  sources the sidecar could not compile (its failure recorded): refused,
#                 build_failed, the log (in the VM) names the compiler's error
#   sidecar-wait  sources nothing was built for: waiting-for-build, then build_wait_timeout
#   dtk           the node's headers hidden; `agent --check --image-headers DIR` with a Driver
#                 Toolkit image's headers: for another kernel only, or named as the node's but
#                 holding another kernel's Module.symvers -> refuse, kernel_headers_mismatch;
#                 the node's own -> build possible with them
#   init-fail     /etc/modprobe.d: `options agent_test_nic fail_init=1`: agent_test_nic's init
#                 fails (ENXIO), agent_test_helper rolled back, status.failure names the module,
#                 ENXIO and the kernel's log; the conf removed + SIGHUP: ready
#   foreign-held  a foreign agent_test_helper (same name, another build id) held by
#                 agent_test_holder: --exit-on-refuse exits 20, decision refuse, the conflict
#                 names agent_test_holder; the foreign modules untouched
#   intree-swap   the foreign agent_test_helper as the kernel's own module (in the tree,
#                 depmod'ed), loaded and unused: removed before loading (status.removed), the
#                 bundle ready; `agent unload` removes the bundle and inserts the kernel's own
#                 module again (restored, with its own build id)
#   ro-state      --state-dir on a read-only tmpfs: exit 2, the message names the directory,
#                 no ready file
#   fw-conflict   firmware_class.path set by someone else (/elsewhere): kept,
#                 status.firmware.conflict says so
#   enforced      module.sig_enforce switched on (it can only be switched on, so last): a build
#                 would make unsigned modules: refused, build_unsigned_enforced, nothing loaded
#   faults        (before dtk) a watcher checks through every scenario that a ready file is only
#                 seen while its status says ready; early-hup: SIGHUP right after exec, still
#                 ready; `agent ready` 0, then after kill -9 the stale ready file fails it (1);
#                 kill9-init: agent_test_nic sleeps in its init (init_delay_ms from modprobe.d),
#                 the agent is killed there: the journal names it intended, the restart adopts
#                 it (fast path), agent unload removes it; ready-dir: a directory named ready is
#                 removed first; deep-journal: undo.json nested 100,000 deep: refused
#                 journal_unreadable (alive), unload and --check exit 2 naming it, removed +
#                 SIGHUP: ready; forged-journal: unload touches no module without a build id,
#                 no restore path outside the kernel's tree, no foreign NFD file or firmware
#                 path (exit 1); fs-full: the state filesystem full, the driver lost, SIGHUP:
#                 nothing inserted, alive; freed + SIGHUP: ready; broken-cache: five broken
#                 copies of the sidecar's entry, each refused build_failed naming file and field
# The start-to-ready times of first-load and restart (wall clock in the VM and status.timings)
# are printed as the benchmark.
#
# Usage: lifecycle-vm.sh [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]
#   ABI       the target kernel, default the role k61 (6.1.0-56 while the archive serves it)
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -p ABI    the bundle's build, the target's kABI (default k61_same)
#   -c ABI    the changed-kABI build (default k61_old)
#   -l LOG    keep the whole serial console there
# Output: per scenario what the VM saw on failure (status.json at the key moments, the agent's
# log, the kernel's messages), the benchmark, "PASS|FAIL <what>" lines, "N passed, M failed".
# Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 1200), QEMU, BUSYBOX (static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
# shellcheck source=tests/e2e/node-lib.sh
. "$HERE/node-lib.sh"
FIXTURES=$REPO/tests/fixtures
KMOD_SRC=$FIXTURES/kmod-src
NIC_BDF=0000:00:03.0

die() { echo "lifecycle-vm: $*" >&2; exit 2; }

usage="usage: lifecycle-vm.sh [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]"
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
bash "$HERE/fetch-kernels.sh" "$abi" "$prev" "$old" >&2 || die "fetch-kernels.sh $abi $prev $old failed"
abi=$(vm_abi "$abi") || die "no kernel for $abi"
prev=$(vm_abi "$prev") || die "no kernel for $prev"
old=$(vm_abi "$old") || die "no kernel for $old"
echo "lifecycle-vm: target $abi, bundle built for $prev, changed-kABI bundle for $old" >&2
[[ $old != "$abi" && $old != "$prev" ]] || die "-c $old must be another kABI than the target and -p"
[[ -x $agent ]] || die "no agent binary at $agent (build it, or pass -a AGENT)"
[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX (apt-get install busybox-static)"
! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is not static (apt-get install busybox-static)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
command -v gcc >/dev/null || die "no gcc (to build tryload)"
[[ $(id -u) -eq 0 ]] || die "needs root (build-bundle.sh builds in a private mount namespace)"

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-lifecycle-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# ---- the host: tools, the agent, the target kernel (vm_host_root, as check-vm.sh) -------------
[[ -f /usr/share/misc/pci.ids ]] || die "no /usr/share/misc/pci.ids (apt-get install pci.ids)"
vm_host_root "$root" "$kdir" "$agent" e1000 crc32_generic dummy loop fat
mkdir -p "$root"/{etc/modprobe.d,var/lib}
headers=$VM_HEADERS
[[ -n $headers && -f $root$headers/Makefile && -f $root$headers/Module.symvers ]] ||
  die "no headers (Makefile, Module.symvers) of $kver in the cache: the changed-kABI case needs a possible build"

# ---- the image: the bundle, its firmware; the other builds ------------------------------------
build() { bash "$KMOD_SRC/build-bundle.sh" "$@" >/dev/null || die "build-bundle.sh $* failed"; }
build "$prev" "$root/opt/lib/modules/$prev_kver"
build "$old" "$root/bundles/old"
build "$prev" "$root/foreign" --foreign
# The foreign helper also as the kernel's own module (in its tree, indexed again by depmod): a
# loaded, unused module of a bundle module's name, which the agent removes before loading and
# `agent unload` inserts again.
mkdir -p "$root/lib/modules/$kver/updates"
cp "$root/foreign/agent_test_helper.ko" "$root/lib/modules/$kver/updates/"
depmod -b "$root" "$kver" || die "depmod -b $root $kver failed"
mkdir -p "$root/opt/lib/firmware"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/opt/lib/firmware/"
fw_size=$(stat -c %s "$KMOD_SRC/firmware/agent-test/agent_test_nic.bin")
buildid() { readelf -n "$1" | awk '/Build ID:/ { print $3 }'; }

# ---- the Driver Toolkit sidecar's role, played by this machine: `agent build --root NODE` -----
[[ $abi == "$(vm_abi k61)" ]] || die "the sidecar scenarios need the kernel of role k61 (make-host.sh debian12)"
bash "$HERE/fetch-kernels.sh" --kbuild "$abi" >&2 || die "fetch-kernels.sh --kbuild $abi failed"
node_with_headers "$work/node" "$abi" || die "node_with_headers $abi failed"
dkms_src "$root/usr/src"
dkms_src "$root/usr/src-broken"
echo '#error agent-test: deliberately broken' >>"$root/usr/src-broken/agent-test-driver-1.0/agent_test_nic/agent_test_nic.c"
dkms_src "$root/usr/src-other"
echo '# sources nothing was built for' >>"$root/usr/src-other/agent-test-driver-1.0/dkms.conf"
sidecar() { # sidecar TAG SOURCES [ARGS]: agent build as the sidecar runs it, its JSON in $work/sidecar-TAG.json
  local tag=$1 src=$2
  shift 2
  mkdir -p "$work/tmp"
  TMPDIR=$work/tmp "$agent" build --root "$work/node" --sources "$src" --json "$@" >"$work/sidecar-$tag.json" \
    2>"$work/sidecar-$tag.err" || true
}
# The sidecar signs with a key of its own (a Secret); this kernel does not trust it, so the
# modules load tainted - and only if the kernel accepts the signature's format.
mkdir -p "$root/keys"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=agent tests/CN=agent test module signing" \
  -addext "keyUsage=digitalSignature" -keyout "$work/signing.key" -out "$root/keys/signing.crt" 2>/dev/null ||
  die "openssl could not make a signing key"
sidecar good "$root/usr/src" --signing-key "$work/signing.key" --signing-cert "$root/keys/signing.crt"
sidecar broken "$root/usr/src-broken"
jfield() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$@"; }
[[ $(jfield "$work/sidecar-good.json" result) == built ]] ||
  die "the sidecar's build failed: $(cat "$work/sidecar-good.json" "$work/sidecar-good.err")"
[[ $(jfield "$work/sidecar-broken.json" result) == failed ]] ||
  die "the sidecar's build of broken sources did not fail: $(cat "$work/sidecar-broken.json")"
side_key=$(jfield "$work/sidecar-good.json" key)
# Driver Toolkit images' headers (what matters of them here: Makefile and Module.symvers)
old_kver=$(<"$CACHE/$old/.done")
for d in "dtk-other/$old_kver:$old" "dtk-renamed/$kver:$old" "dtk-good/$kver:$abi"; do
  mkdir -p "$root/${d%%:*}"
  cp "$root$headers/Makefile" "$root/${d%%:*}/"
  cp "$CACHE/${d##*:}/Module.symvers" "$root/${d%%:*}/"
done
side_entry=$work/node/var/lib/intel-gpu-driver/builds/$kver/$side_key
# The sidecar's modules carry a PKCS#7 signature by the test certificate: checked here without
# the agent (modsig-check.py: the trailer, openssl cms -verify). The VM then proves that the
# kernel took files so signed (their build ids), which a malformed signature forbids (EBADMSG).
python3 "$HERE/modsig-check.py" "$root/keys/signing.crt" "$side_entry"/*.ko >"$work/sidecar-sig.txt" || true
mkdir -p "$root/var/lib/intel-gpu-driver"
cp -a "$work/node/var/lib/intel-gpu-driver/builds" "$root/var/lib/intel-gpu-driver/"
# broken-cache: copies of the sidecar's good entry, each with one thing of the wrong shape (as a
# hand edit, a half-written disk or another tool could leave it); each its own cache.
for v in modules-string file-escape kernel-number failed-type deep; do
  b=$root/var/lib/igd-broken-$v/builds/$kver
  mkdir -p "$b"
  cp -a "$side_entry" "$b/"
  python3 - "$b/$side_key" "$v" <<'PY'
import json, os, sys
entry, variant = sys.argv[1:3]
path = os.path.join(entry, "result.json")
j = json.load(open(path))
if variant == "modules-string":
    j["modules"] = "agent_test_nic.ko"
elif variant == "file-escape":
    j["modules"][0]["file"] = "../../../../../etc/os-release"
elif variant == "kernel-number":
    j["kernel"] = 61
elif variant == "failed-type":
    os.remove(path)
    path = os.path.join(entry, "failed.json")
    j = {"schema": 1, "kernel": j["kernel"], "key": j["key"], "reason": 7, "detail": "x", "inputs": j["inputs"]}
if variant == "deep":
    open(path, "w").write('{"inputs": ' + "[" * 100000 + "]" * 100000 + "}")
else:
    json.dump(j, open(path, "w"))
PY
done

cat >"$root/init" <<INIT
#!/bin/sh
NIC=$NIC_BDF
INIT
cat >>"$root/init" <<'INIT'
export PATH=/bin:/usr/local/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
dmesg -n 1 # the kernel's messages are shown per scenario, not on the console
dmesg -c >/dev/null
SD=/run/intel-gpu-driver
NFD=/etc/kubernetes/node-feature-discovery/features.d
FWP=/sys/module/firmware_class/parameters/path
mkdir -p "$NFD"
echo "LCVM BEGIN $(uname -r)"
echo "FACT boot boot_id=$(cat /proc/sys/kernel/random/boot_id)"

now() { read -r u _ </proc/uptime; echo "$u"; } # seconds, two decimals
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
buildid() { od -An -tx1 -v "/sys/module/$1/notes/.note.gnu.build-id" 2>/dev/null | tr -d ' \n' | tail -c 40; }
live() { [ -d "/sys/module/$1" ] && echo 1 || echo 0; }
snap() { # snap TAG: status.json as one line
  if [ -f $SD/status.json ]; then echo "SNAP $1 $(tr '\n' ' ' <$SD/status.json)"; else echo "SNAP $1 -"; fi
}
facts() { # facts TAG: what the node looks like now
  echo "FACT $1 ready=$([ -e $SD/ready ] && echo 1 || echo 0) driver=$(driver)" \
    "helper=$(live agent_test_helper) nic=$(live agent_test_nic) holder=$(live agent_test_holder)" \
    "helper_id=$(buildid agent_test_helper) nic_id=$(buildid agent_test_nic)" \
    "helper_refcnt=$(cat /sys/module/agent_test_helper/refcnt 2>/dev/null || echo -)" \
    "lock=$([ -e $SD/agent.lock ] && echo 1 || echo 0)"
  echo "FWPATH $1 $(cat $FWP)"
}
dump() { dmesg -c | sed "s/^/DMESG $1 /"; } # dump TAG: the kernel's messages since the last dump
alog() { [ -f "/tmp/agent-$1.log" ] && sed "s/^/LOG $1 /" "/tmp/agent-$1.log"; } # alog TAG: its agent's log
# alive PID: running (a zombie, exited but not yet reaped by this shell, is not)
alive() { [ -e "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
start() { # start TAG ARGS...: `agent run ARGS` in the background (AGENT_PID), T0 its start
  tag=$1; shift
  T0=$(now)
  agent run "$@" >"/tmp/agent-$tag.log" 2>&1 &
  AGENT_PID=$!
  echo "START $tag pid=$AGENT_PID t=$T0 args=$*"
}
wait_ready() { # wait_ready TAG SECONDS: polls the ready file every 0.1 s
  n=0
  while [ ! -e $SD/ready ] && [ $n -lt $(($2 * 10)) ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
  if [ -e $SD/ready ]; then echo "READY $1 t0=$T0 t=$(now)"; else echo "NOTREADY $1 t0=$T0 t=$(now)"; fi
}
own_status() { # own_status PATTERN: status.json is this agent's (its pid) and matches PATTERN (grep -E)
  grep -qE "\"pid\" *: *$AGENT_PID[^0-9]" $SD/status.json 2>/dev/null && grep -qE "$1" $SD/status.json 2>/dev/null
}
wait_status() { # wait_status SECONDS PATTERN: until own_status PATTERN or the time is up
  n=0
  while ! own_status "$2" && [ $n -lt $(($1 * 10)) ] && alive "$AGENT_PID"; do sleep 0.1; n=$((n + 1)); done
}
stop() { # stop TAG [SIGNAL]: signals the agent, waits up to 60 s for its exit
  kill -"${2:-TERM}" "$AGENT_PID" 2>/dev/null
  n=0
  while alive "$AGENT_PID" && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
  if alive "$AGENT_PID"; then kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT $1 hung"; return; fi
  wait "$AGENT_PID"; echo "EXIT $1 $?"
}
wait_exit() { # wait_exit TAG SECONDS: the agent's own exit
  n=0
  while alive "$AGENT_PID" && [ $n -lt $(($2 * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  if alive "$AGENT_PID"; then kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT $1 hung"; return; fi
  wait "$AGENT_PID"; echo "EXIT $1 $?"
}
unload() { # unload TAG: agent unload --json
  timeout 120 agent unload --nfd-dir "$NFD" --json >/tmp/unload.out 2>"/tmp/agent-$1.log"; rc=$?
  echo "EXIT $1 $rc"
  echo "SNAP $1 $(tr '\n' ' ' </tmp/unload.out)"
}
nfd() { if [ -f "$NFD/intel-gpu-driver" ]; then sed "s/^/NFD $1 /" "$NFD/intel-gpu-driver"; else echo "NFD $1 -"; fi; }

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
echo -n /elsewhere >$FWP
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
INIT
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-1200}
serial="$work/serial.log"
echo "lifecycle-vm: booting $kver with a $(($(stat -c %s "$work/initrd.cpio") / 1048576)) MiB initramfs" \
  "(timeout ${timeout_s}s)" >&2
vm_boot lifecycle-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "" -nic user,model=e1000 || true
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 "$HERE/lifecycle-check.py" "$serial.txt" "$NIC_BDF" "$fw_size" \
  "$(buildid "$root/opt/lib/modules/$prev_kver/agent_test_helper.ko")" \
  "$(buildid "$root/opt/lib/modules/$prev_kver/agent_test_nic.ko")" \
  "$(buildid "$root/foreign/agent_test_helper.ko")" "$kver" "$side_key" \
  "$(buildid "$side_entry/agent_test_helper.ko")" "$(buildid "$side_entry/agent_test_nic.ko")" \
  "$work/sidecar-sig.txt"
