#!/bin/sh
# build-vm.sh's /init: the node build's scenarios (see build-vm.sh) on a real Debian 12 root.
# Env (/e2e/env.sh): NIC.
# shellcheck source=/dev/null
. /e2e/env.sh
# shellcheck source=tests/e2e/vm/lib.sh
. /e2e/lib.sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp LANG=C
mount_basics
BUILDS=/var/lib/intel-gpu-driver/builds
mkdir -p "$NFD"
echo "BVM BEGIN $(uname -r)"
read -r up _ </proc/uptime; echo "FACT boot uptime=$up"
echo "FACT boot mem_kib=$(awk '/MemTotal/ { print $2 }' /proc/meminfo) cpus=$(nproc) root_kib=$(df -k / | awk 'NR == 2 { print $3 }')"

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
stop sigterm TERM 30
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
