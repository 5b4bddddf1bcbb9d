#!/usr/bin/env bash
# The node build's whole flow inside ONE real-kernel VM (issue 7): the kernel of role k61 booted
# under qemu (TCG) with a real Debian 12 root filesystem (build-rootfs.sh: mmdebstrap minbase +
# gcc-12, make, dkms, kmod, the agent's runtime libraries, and k61's headers packages installed
# with dpkg) as an uncompressed initramfs. That root is both the node and the driver image; a
# second cpio appended per run carries the image's parts: the agent (-a) at
# /usr/local/bin/agent, the DKMS sources (tests/fixtures/kmod-src: dkms.conf + the two module
# directories) at /usr/src/agent-test-driver-1.0/, a copy that does not compile at
# /usr/src-broken/agent-test-driver-1.0/, the prebuilt bundle built for k61_old (another
# module_layout: refused by k61, so the decision is `build`) at /opt/lib/modules/<kver of
# k61_old>/ and the firmware at /opt/lib/firmware. The VM's /init runs, in this order:
#
#   whole-flow         the entrypoint `agent run --nfd-dir ...` (build mode node by default): phases
#                      pass through `building` to `ready`; source "built", build.result "built";
#                      0000:00:03.0 bound to agent_test_nic; the cache entry
#                      /var/lib/intel-gpu-driver/builds/<kver>/<key>/ = build.entry holds
#                      result.json, build.log and the .ko files whose build ids are the live
#                      modules' (and whose sha256 are the status's); no `.tmp-*` left
#   restart            SIGTERM (exit 0), started again: ready, build.result "cached" (or the fast
#                      path), no build (the cache directory unchanged, file by file)
#   agent-build        `agent build --json` (the build command) on the same cache: cached, with
#                      the entrypoint's key (built when the entrypoint built nothing); a second
#                      run cached; its modules inserted by hand bind 0000:00:03.0 to
#                      agent_test_nic with the files' build ids; removed again
#   compile-failure    after `agent unload`: the broken sources (--sources /usr/src-broken, its
#                      own --state-dir): phase refused, reasons[] build_failed, build.log in the VM
#                      holding the compiler's error; a second run: still refused, the log
#                      untouched (the recorded failure, no new compilation)
#   sigterm-build      a fresh --build-cache, SIGTERM while phase is `building` and the compiler
#                      runs: exit 0 within 10 s, phase `stopping`, nothing in the cache (no entry,
#                      no .tmp-*), no make/cc1/dkms process left, no $TMPDIR/agent-build.* left
#   signed             `agent build --signing-key --signing-cert` with a key and certificate this
#                      script makes with openssl, in a fresh cache: built; each module carries a
#                      PKCS#7 signature by that certificate (the files sent back over the serial
#                      console, checked here by modsig-check.py with openssl, not by the agent);
#                      inserted by hand (the kernel does not know the key: it loads, tainted - and
#                      only if it accepts the signature's format), the NIC binds; removed
# Timings (the in-VM build, start to ready) are printed as the benchmark.
#
# Usage: build-vm.sh [-a AGENT] [-c ABI] [-l LOG] [ABI]
#   ABI       the node's kernel, default the role k61
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -c ABI    the prebuilt bundle's kernel, another kABI (default k61_old)
#   -l LOG    keep the whole serial console there
# Output: what the VM saw for a failing scenario, the benchmark, "PASS|FAIL <what>" lines,
# "N passed, M failed". Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 1500), QEMU, VM_MEM (MiB, 3072),
# VM_SMP (2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
KMOD_SRC=$REPO/tests/fixtures/kmod-src
NIC_BDF=0000:00:03.0

die() { echo "build-vm: $*" >&2; exit 2; }

usage="usage: build-vm.sh [-a AGENT] [-c ABI] [-l LOG] [ABI]"
agent=${AGENT:-$REPO/build/agent/agent} old=k61_old log=""
while getopts "a:c:l:" opt; do
  case $opt in
    a) agent=$OPTARG ;;
    c) old=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || die "$usage"
abi=${1:-k61}
[[ -x $agent ]] || die "no agent binary at $agent (build it, or pass -a AGENT)"
agent=$(realpath "$agent")
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap, build-bundle.sh's private mount namespace)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
bash "$HERE/fetch-kernels.sh" --kbuild "$abi" "$old" >&2 || die "fetch-kernels.sh --kbuild $abi $old failed"
abi=$(vm_abi "$abi") || die "no kernel for $abi"
old=$(vm_abi "$old") || die "no kernel for $old"
[[ $old != "$abi" ]] || die "-c $old must be another kABI than the node's"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
old_kver=$(<"$CACHE/$old/.done")
echo "build-vm: node kernel $abi, prebuilt bundle built for $old" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-build-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- the root filesystem (cached) --------------------------------------------------------------
t=$SECONDS
rootfs=$(bash "$HERE/build-rootfs.sh" "$abi" "$agent") || die "build-rootfs.sh failed"
echo "build-vm: root filesystem $rootfs ($(($(stat -c %s "$rootfs") / 1048576)) MiB) in $((SECONDS - t)) s" >&2
[[ ! -f $rootfs.info ]] || echo "build-vm: root filesystem made in $(<"$rootfs.info")" >&2

# ---- the image's parts, per run ------------------------------------------------------------------
img=$work/image
mkdir -p "$img/usr/local/bin" "$img/usr/src/agent-test-driver-1.0" "$img/usr/src-broken" "$img/opt/lib/firmware"
strip --strip-debug -o "$img/usr/local/bin/agent" "$agent"
# The package as build-bundle.sh builds it: dkms.conf + the two module directories (not
# agent_test_holder, the foreign variant's).
cp -r "$KMOD_SRC/dkms.conf" "$KMOD_SRC/agent_test_helper" "$KMOD_SRC/agent_test_nic" "$img/usr/src/agent-test-driver-1.0/"
cp -r "$img/usr/src/agent-test-driver-1.0" "$img/usr/src-broken/"
printf '\nstatic int agent_test_broken(void) { return 1 +; } /* deliberately broken */\n' \
  >>"$img/usr/src-broken/agent-test-driver-1.0/agent_test_nic/agent_test_nic.c"
bash "$KMOD_SRC/build-bundle.sh" "$old" "$img/opt/lib/modules/$old_kver" >/dev/null ||
  die "build-bundle.sh $old failed"
cp -r "$KMOD_SRC/firmware/agent-test" "$img/opt/lib/firmware/"
# signed: a key and certificate of the test's own (the kernel does not know them)
mkdir -p "$img/keys"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=agent tests/CN=agent build-vm signing" \
  -addext "keyUsage=digitalSignature" -keyout "$img/keys/signing.key" -out "$work/signing.crt" 2>/dev/null ||
  die "openssl could not make a signing key"
cp "$work/signing.crt" "$img/keys/"

cat >"$img/init" <<INIT
#!/bin/sh
NIC=$NIC_BDF
INIT
cat >>"$img/init" <<'INIT'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp LANG=C
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
dmesg -n 1
dmesg -c >/dev/null
SD=/run/intel-gpu-driver
BUILDS=/var/lib/intel-gpu-driver/builds
NFD=/etc/kubernetes/node-feature-discovery/features.d
mkdir -p "$NFD"
echo "BVM BEGIN $(uname -r)"
read -r up _ </proc/uptime; echo "FACT boot uptime=$up"
echo "FACT boot mem_kib=$(awk '/MemTotal/ { print $2 }' /proc/meminfo) cpus=$(nproc) root_kib=$(df -k / | awk 'NR == 2 { print $3 }')"

now() { read -r u _ </proc/uptime; echo "$u"; }
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
live_id() { od -An -tx1 -v "/sys/module/$1/notes/.note.gnu.build-id" 2>/dev/null | tr -d ' \n' | tail -c 40; }
file_id() { readelf -n "$1" 2>/dev/null | awk '/Build ID:/ { print $3 }'; }
live() { [ -d "/sys/module/$1" ] && echo 1 || echo 0; }
alive() { [ -e "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
facts() { # facts TAG
  echo "FACT $1 driver=$(driver) helper=$(live agent_test_helper) nic=$(live agent_test_nic)" \
    "helper_id=$(live_id agent_test_helper) nic_id=$(live_id agent_test_nic) ready=$([ -e $SD/ready ] && echo 1 || echo 0)"
}
snap() { # snap TAG [STATEDIR]
  f=${2:-$SD}/status.json
  if [ -f "$f" ]; then echo "SNAP $1 $(tr '\n' ' ' <"$f")"; else echo "SNAP $1 -"; fi
}
phase_of() { grep -o '"phase" *: *"[^"]*"' "${1:-$SD}/status.json" 2>/dev/null | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'; }
alog() { [ -f "/tmp/agent-$1.log" ] && sed "s/^/LOG $1 /" "/tmp/agent-$1.log"; }
dump() { dmesg -c | sed "s/^/DMESG $1 /"; }
start() { # start TAG ARGS...
  tag=$1; shift
  T0=$(now)
  agent run "$@" >"/tmp/agent-$tag.log" 2>&1 &
  AGENT_PID=$!
  echo "START $tag pid=$AGENT_PID t=$T0 args=$*"
}
# follow TAG SECONDS STATEDIR STOP_RE: prints each phase the status shows (PHASE lines, polled
# every 0.5 s) until one matches STOP_RE (grep -E), the agent exits or the time is up.
follow() {
  last="" n=0
  while [ $n -lt $(($2 * 2)) ]; do
    if grep -qE "\"pid\" *: *$AGENT_PID[^0-9]" "$3/status.json" 2>/dev/null; then
      p=$(phase_of "$3")
      if [ -n "$p" ] && [ "$p" != "$last" ]; then echo "PHASE $1 $p t=$(now)"; last=$p; fi
      if echo "$p" | grep -qE "$4"; then echo "REACHED $1 $p t0=$T0 t=$(now)"; return 0; fi
    fi
    alive "$AGENT_PID" || { echo "REACHED $1 exited t0=$T0 t=$(now)"; return 1; }
    sleep 0.5; n=$((n + 1))
  done
  echo "REACHED $1 timeout t0=$T0 t=$(now)"
  return 1
}
stop() { # stop TAG [SECONDS]: SIGTERM, waits for the exit
  T1=$(now)
  kill -TERM "$AGENT_PID" 2>/dev/null
  n=0
  while alive "$AGENT_PID" && [ $n -lt $((${2:-60} * 10)) ]; do sleep 0.1; n=$((n + 1)); done
  if alive "$AGENT_PID"; then kill -KILL "$AGENT_PID"; wait "$AGENT_PID"; echo "EXIT $1 hung"; return; fi
  wait "$AGENT_PID"; echo "EXIT $1 $? t0=$T1 t=$(now)"
}
cachestate() { # cachestate TAG DIR: every file with size and mtime, and a digest of the list
  echo "CACHEDIR $1 exists=$([ -d "$2" ] && echo 1 || echo 0)"
  echo "CACHESUM $1 $(find "$2" -printf '%P %y %s %T@\n' 2>/dev/null | sort | md5sum | cut -c1-32)"
  find "$2" -mindepth 1 -printf '%P %y %s\n' 2>/dev/null | sort | sed "s/^/CACHE $1 /"
}
build_procs() { # build_procs TAG: what of a build still runs (PROC lines); PSRAN: how many processes ps saw
  ps -eo pid=,comm=,args= >/tmp/ps.out
  echo "PSRAN $1 procs=$(wc -l </tmp/ps.out)"
  awk -v tag="$1" '$2 ~ /^(make|cc1|gcc|gcc-12|as|ld|dkms|modpost|objtool)$/ { print "PROC " tag " " $0 }' /tmp/ps.out
}

# ---- whole-flow: the entrypoint decides build, builds, loads, ready ------------------------------
start whole --nfd-dir "$NFD"
follow whole 600 $SD '^(ready|refused|waiting-for-build)$'
sleep 1
snap whole; facts whole
for d in "$BUILDS"/*/*/; do
  [ -d "$d" ] || continue
  echo "ENTRY whole ${d%/}"
  for f in "$d"*.ko; do [ -f "$f" ] && echo "KO whole $(basename "$f" .ko) $(file_id "$f") $(sha256sum "$f" | cut -d' ' -f1) $f"; done
done
cachestate whole "$BUILDS"
[ -f "$NFD/intel-gpu-driver" ] && sed 's/^/NFD whole /' "$NFD/intel-gpu-driver"
dump whole

# ---- restart: no build --------------------------------------------------------------------------
stop whole
snap whole-stopped
start restart --nfd-dir "$NFD"
follow restart 300 $SD '^(ready|refused|waiting-for-build)$'
sleep 1
snap restart; facts restart
cachestate restart "$BUILDS"
stop restart
alog whole; alog restart; dump restart
timeout 300 agent unload --nfd-dir "$NFD" --json >/tmp/unload.out 2>/tmp/agent-unload.log; echo "EXIT unload $?"
facts unload
alog unload

# ---- agent-build: `agent build` on the same cache: cached with the entrypoint's key (or, with
# no entrypoint build, built) ----------------------------------------------------------------------
# What the cache holds before it, as the filesystem shows it: the expected result's source.
for d in "$BUILDS/$(uname -r)"/*/; do [ -f "${d}result.json" ] && echo "ENTRY pre-ab ${d%/}"; done
cachestate pre-ab "$BUILDS"
T0=$(now)
agent build --json >/tmp/ab1.json 2>/tmp/agent-ab1.log
echo "EXIT ab1 $? t0=$T0 t=$(now)"
echo "JSON ab1 $(tr '\n' ' ' </tmp/ab1.json)"
T0=$(now)
agent build --json >/tmp/ab2.json 2>/tmp/agent-ab2.log
echo "EXIT ab2 $? t0=$T0 t=$(now)"
echo "JSON ab2 $(tr '\n' ' ' </tmp/ab2.json)"
for m in agent_test_helper agent_test_nic; do
  f=$(sed -n "s/.*\"path\" *: *\"\([^\"]*\/$m\.ko\)\".*/\1/p" /tmp/ab1.json | head -n 1)
  echo "KO ab $m $(file_id "$f") $f"
  insmod "$f"; echo "INSMOD ab-$m $?"
done
sleep 1
facts ab
rmmod agent_test_nic agent_test_helper
facts ab-removed
alog ab1; dump ab

# ---- compile-failure: refused, build_failed, not retried ----------------------------------------
SB=/run/igd-broken
start broken1 --sources /usr/src-broken --state-dir $SB
follow broken1 600 $SB '^(ready|refused|waiting-for-build)$'
sleep 1
snap broken1 $SB; facts broken1
blog=$(grep -o '"log" *: *"[^"]*"' $SB/status.json 2>/dev/null | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')
if [ -n "$blog" ] && [ -f "$blog" ]; then
  echo "BLOG broken1 exists=1 error=$(grep -c 'deliberately broken\|error:' "$blog") sum=$(find "$blog" -printf '%s %T@') md5=$(md5sum <"$blog" | cut -c1-32) path=$blog"
  grep -m 5 'error' "$blog" | sed 's/^/BLOGLINE broken1 /'
else
  echo "BLOG broken1 exists=0 path=$blog"
fi
cachestate broken1 "$BUILDS"
stop broken1
start broken2 --sources /usr/src-broken --state-dir $SB
follow broken2 300 $SB '^(ready|refused|waiting-for-build)$'
sleep 1
snap broken2 $SB; facts broken2
if [ -n "$blog" ] && [ -f "$blog" ]; then
  echo "BLOG broken2 exists=1 error=$(grep -c 'deliberately broken\|error:' "$blog") sum=$(find "$blog" -printf '%s %T@') md5=$(md5sum <"$blog" | cut -c1-32) path=$blog"
else
  echo "BLOG broken2 exists=0 path=$blog"
fi
cachestate broken2 "$BUILDS"
build_procs broken2
stop broken2
alog broken1; alog broken2; dump broken

# ---- sigterm during the build ----------------------------------------------------------------
ST=/run/igd-sigterm SC=/var/lib/igd-sigterm-cache
mkdir -p $SC
start sigterm --build-cache $SC --state-dir $ST
follow sigterm 300 $ST '^(building|ready|refused|waiting-for-build)$'
# The compiler at work (dkms -> make -> gcc): then the signal.
n=0
while [ $n -lt 240 ] && alive "$AGENT_PID" && ! ps -eo comm= | grep -qE '^(cc1|gcc-12|make|dkms)$'; do
  sleep 0.5; n=$((n + 1))
done
alive "$AGENT_PID" && sleep 2
build_procs sigterm-before
snap sigterm-before $ST
stop sigterm 30
snap sigterm $ST; facts sigterm
sleep 1
build_procs sigterm
cachestate sigterm $SC
echo "TMPLEFT sigterm $(ls -d /tmp/agent-build.* 2>/dev/null | tr '\n' ' ')"
alog sigterm; dump sigterm

# ---- signed: built and signed with the test's key; the files go back to the host to be checked --
T0=$(now)
agent build --json --cache /var/lib/igd-signed-cache --signing-key /keys/signing.key \
  --signing-cert /keys/signing.crt >/tmp/signed.json 2>/tmp/agent-signed.log
echo "EXIT signed $? t0=$T0 t=$(now)"
echo "JSON signed $(tr '\n' ' ' </tmp/signed.json)"
for m in agent_test_helper agent_test_nic; do
  f=$(sed -n "s/.*\"path\" *: *\"\([^\"]*\/$m\.ko\)\".*/\1/p" /tmp/signed.json | head -n 1)
  echo "KO signed $m $(file_id "$f") $f"
  [ -f "$f" ] && base64 -w 76 "$f" | sed "s/^/MODB64 $m /"
done
for m in agent_test_helper agent_test_nic; do
  f=$(sed -n "s/.*\"path\" *: *\"\([^\"]*\/$m\.ko\)\".*/\1/p" /tmp/signed.json | head -n 1)
  insmod "$f"; echo "INSMOD signed-$m $?"
done
sleep 1
facts signed
echo "FACT signed-taint helper=$(cat /sys/module/agent_test_helper/taint 2>/dev/null || echo -) nic=$(cat /sys/module/agent_test_nic/taint 2>/dev/null || echo -)"
rmmod agent_test_nic agent_test_helper
facts signed-removed
alog signed; dump signed

echo "BVM END"
echo o >/proc/sysrq-trigger
sleep 30
INIT
chmod +x "$img/init"
vm_pack "$img" "$work/image.cpio"
cat "$rootfs" "$work/image.cpio" >"$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-1500}
serial=$work/serial.log
echo "build-vm: booting $kver with a $(($(stat -c %s "$work/initrd.cpio") / 1048576)) MiB initramfs" \
  "(-m ${VM_MEM:-3072}, -smp ${VM_SMP:-2}, timeout ${timeout_s}s)" >&2
t=$SECONDS
vm_boot build-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "" \
  -m "${VM_MEM:-3072}" -smp "${VM_SMP:-2}" -nic user,model=e1000 || true
echo "build-vm: the VM ran $((SECONDS - t)) s" >&2
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 "$HERE/build-check.py" "$serial.txt" "$NIC_BDF" "$kver" "$((SECONDS - t))" "$work/signing.crt"
