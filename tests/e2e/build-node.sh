#!/usr/bin/env bash
# `agent build` on this machine (no VM) against a node tree that holds the real Debian headers
# packages of role k61 (linux-headers-<kver>, linux-headers-<abi>-common, linux-kbuild-<series>,
# from tests/e2e/fetch-kernels.sh --kbuild), with the test driver set (tests/fixtures/kmod-src)
# as a DKMS tree in /usr/src layout:
#   1. built: both modules, each loadable by `agent kabi check` against k61's Module.symvers/tree
#   2. a second run: cached (same key), no build; a cache entry changed since: built again; a
#      kernel whose /proc/version names another compiler: built, the mismatch reported; headers
#      whose -common is missing: build_environment, nothing recorded
#   3. sources that do not compile: failed, build_failed, the log kept; a second run does not build
#   4. a build that outlives --timeout: failed, build_timeout, a progress line after 10 s,
#      nothing left behind
#   5. SIGTERM during the build: no temporary directory, no process of the build, no cache entry
#   6. --signing-key/--signing-cert: the modules signed (the kernel's trailer, the signer in the
#      result and in `agent kabi check`), another cache key than unsigned; a key that is not the
#      certificate's (sources not yet built): exit 2 naming the file; sig_enforce on the node and no key:
#      build_unsigned_enforced before any build
#   7. the key hidden from the build: a dkms.conf whose MAKE first runs a probe (as root, in the
#      build's namespace) that tries the key by its path, by the path its links lead to, through
#      the agent's /proc/<pid>/root, the host root, the environment, and unmounting what hides it;
#      the probe's record (in the build's log) shows it ran and read its control file; a key
#      readable by others is warned about; a key that does not parse: exit 2 naming it
#
#   build-node.sh AGENT
# Exit 77 (SKIP, which the suite counts as a failure) when k61's kernel, its kbuild packages or
# dkms (tests/setup.sh) are missing or not root.
set -euo pipefail

AGENT=${1:?usage: build-node.sh AGENT}
AGENT=$(realpath "$AGENT")
HERE=$(cd "$(dirname "$0")" && pwd)
FIXTURES=$(cd "$HERE/../fixtures" && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
# shellcheck source=tests/e2e/node-lib.sh
. "$HERE/node-lib.sh"

skip() { echo "build-node: SKIP: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (a private mount namespace for the build)"
command -v dkms >/dev/null || skip "no dkms (tests/setup.sh installs it)"
abi=$(sed -n 's/^k61=//p' "$CACHE/roles.env" 2>/dev/null | tail -n 1)
[[ -n $abi && -f $CACHE/$abi/.done ]] || skip "kernel of role k61 not fetched (tests/e2e/fetch-kernels.sh k61)"
[[ -f $CACHE/$abi/kbuild/.done ]] || skip "k61's -common and linux-kbuild not fetched (fetch-kernels.sh --kbuild k61)"
command -v python3 >/dev/null || skip "no python3"

failures=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }

work=$(mktemp -d /tmp/agent-build-node.XXXXXX)
cleanup() {
  # Nothing of a build may be left running; if something is, it is this test's failure.
  pkill -KILL -f "$work/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The node: k61's tree with its real headers packages (node-lib.sh).
node=$work/node
rc=0
node_with_headers "$node" "$abi" || rc=$?
((rc == 0)) || { ((rc == 77)) && skip "make-host.sh debian12 skipped"; echo "make-host.sh failed ($rc)" >&2; exit 1; }
kver=$NODE_KVER

# The image's sources in /usr/src layout: <PACKAGE_NAME>-<PACKAGE_VERSION>/dkms.conf.
make_src() { dkms_src "$1"; }
src=$work/src
make_src "$src"
mkdir -p "$work/tmp"
builds=$node/var/lib/intel-gpu-driver/builds/$kver

run_build() {  # run_build OUT.json SRC [args]: the agent's exit code in $rc
  local out=$1 s=$2
  shift 2
  rc=0
  TMPDIR=$work/tmp "$AGENT" build --root "$node" --sources "$s" --json "$@" >"$out" 2>"$out.err" || rc=$?
  cat "$out.err" >&2
}

# This machine plays the image: the build must leave its filesystem as it was.
image_state() {
  ls -A /usr/src /usr/lib | sort
  { find /var/lib/dkms -mindepth 1 2>/dev/null || true; } | sort
  ls -A /lib/modules 2>/dev/null || true
}
image_before=$(image_state)

# 1. built
run_build "$work/r1.json" "$src"
check "first run exits 0" test "$rc" -eq 0
check "first run: result built" test "$(jget "$work/r1.json" 'd["result"]')" = built
check "first run: kernel $kver" test "$(jget "$work/r1.json" 'd["kernel"]')" = "$kver"
check "first run: both modules" test "$(jget "$work/r1.json" '",".join(sorted(m["name"] for m in d["modules"]))')" = \
  agent_test_helper,agent_test_nic
mapfile -t mods < <(jget "$work/r1.json" '"\n".join(m["path"] for m in d["modules"])')
for m in "${mods[@]}"; do check "$m is in the node's cache" test -f "$m"; done
check "the modules are loadable on $kver (agent kabi check)" \
  "$AGENT" kabi check --symvers "$CACHE/$abi/Module.symvers" --kernel-modules "$CACHE/$abi/modules" "${mods[@]}"
check "the log is kept in the cache" test -s "$(jget "$work/r1.json" 'd["log"]')"
check "the compiler is the kernel's" test "$(jget "$work/r1.json" 'd["compiler"]["matches_kernel"]')" = True
check "no temporary directory left" test -z "$(ls -A "$work/tmp")"
key=$(jget "$work/r1.json" 'd["key"]')
echo "build-node: built in $(jget "$work/r1.json" 'd["build_seconds"]') s (dkms), $(jget "$work/r1.json" 'd["total_seconds"]') s in all"

# 2. cached
run_build "$work/r2.json" "$src"
check "second run exits 0" test "$rc" -eq 0
check "second run: result cached" test "$(jget "$work/r2.json" 'd["result"]')" = cached
check "second run: the same key" test "$(jget "$work/r2.json" 'd["key"]')" = "$key"
check "second run: no build" test "$(jget "$work/r2.json" 'd["build_seconds"] == 0')" = True
echo "build-node: cache hit in $(jget "$work/r2.json" 'd["total_seconds"]') s"

# 2b. a cache entry changed after it was written is not used: built again
printf 'x' >>"${mods[1]}"
run_build "$work/r2b.json" "$src"
check "changed cache entry: exit 0" test "$rc" -eq 0
check "changed cache entry: built again" test "$(jget "$work/r2b.json" 'd["result"]')" = built
check "changed cache entry: the same key" test "$(jget "$work/r2b.json" 'd["key"]')" = "$key"
check "changed cache entry: the module is whole again" "$AGENT" kabi check --symvers "$CACHE/$abi/Module.symvers" \
  --kernel-modules "$CACHE/$abi/modules" "${mods[@]}"

# 2b'. a result.json of the wrong shape (a number where the kernel's name is): built again over
# it, never "internal error" (a crash loop in a sidecar)
entry=$(dirname "${mods[0]}")
python3 -c 'import json,sys; p=sys.argv[1]; j=json.load(open(p)); j["kernel"]=61; json.dump(j,open(p,"w"))' "$entry/result.json"
check "wrong-shaped result.json: it is wrong (the edit took)" \
  test "$(python3 -c 'import json,sys; print(type(json.load(open(sys.argv[1]))["kernel"]).__name__)' "$entry/result.json")" = int
run_build "$work/r2bb.json" "$src"
check "wrong-shaped result.json: exit 0" test "$rc" -eq 0
check "wrong-shaped result.json: built again" test "$(jget "$work/r2bb.json" 'd["result"]')" = built
check "wrong-shaped result.json: the entry is whole again" \
  test "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernel"])' "$entry/result.json")" = "$kver"

# 2c. a kernel built with another compiler than this image's: built, and said so
cp -al "$node" "$work/node-cc" 2>/dev/null || cp -a "$node" "$work/node-cc"
sed -i 's/(gcc-12 (Debian [^)]*) [0-9.]*,/(gcc-12 (Debian 12.2.0-99) 12.2.1,/' "$work/node-cc/proc/version"
rc=0
TMPDIR=$work/tmp "$AGENT" build --root "$work/node-cc" --sources "$src" --json >"$work/r2c.json" 2>"$work/r2c.err" || rc=$?
check "other compiler: exit 0" test "$rc" -eq 0
check "other compiler: a new key (/proc/version is an input)" test "$(jget "$work/r2c.json" 'd["key"]')" != "$key"
check "other compiler: matches_kernel false" test "$(jget "$work/r2c.json" 'd["compiler"]["matches_kernel"]')" = False
check "other compiler: a warning names both" grep -q 'the kernel was built with gcc-12 (Debian 12.2.0-99) 12.2.1' "$work/r2c.err"
rm -rf "$work/node-cc"

# 2d. headers that include a -common the node lacks: the node's problem, not the inputs' failure
cp -al "$node" "$work/node-nc" 2>/dev/null || cp -a "$node" "$work/node-nc"
rm -rf "$work/node-nc/usr/src/linux-headers-$abi-common"
nc=$work/src-nc
make_src "$nc"
echo '# another source tree' >>"$nc/agent-test-driver-1.0/dkms.conf"
nc_before=$(ls -A "$work/node-nc/var/lib/intel-gpu-driver/builds/$kver" | sort)
rc=0
TMPDIR=$work/tmp "$AGENT" build --root "$work/node-nc" --sources "$nc" --json >"$work/r2d.json" 2>"$work/r2d.err" || rc=$?
check "no -common: exit 1" test "$rc" -eq 1
check "no -common: reason build_environment" test "$(jget "$work/r2d.json" 'd["reason"]')" = build_environment
check "no -common: the detail names it" grep -q "linux-headers-$abi-common" "$work/r2d.json"
check "no -common: nothing recorded" test "$(ls -A "$work/node-nc/var/lib/intel-gpu-driver/builds/$kver" | sort)" = "$nc_before"
rm -rf "$work/node-nc"

# 3. sources that do not compile
bad=$work/src-bad
make_src "$bad"
echo '#error agent-test: deliberately broken' >>"$bad/agent-test-driver-1.0/agent_test_nic/agent_test_nic.c"
run_build "$work/r3.json" "$bad"
check "broken sources: exit 1" test "$rc" -eq 1
check "broken sources: result failed" test "$(jget "$work/r3.json" 'd["result"]')" = failed
check "broken sources: reason build_failed" test "$(jget "$work/r3.json" 'd["reason"]')" = build_failed
check "broken sources: the detail is the compiler's error" bash -c "grep -q 'error: #error agent-test: deliberately broken' '$work/r3.json'"
log3=$(jget "$work/r3.json" 'd["log"]')
check "broken sources: the log names the error ($log3)" grep -q 'deliberately broken' "$log3"
check "broken sources: a failed.json in the cache" test -f "$builds/$(jget "$work/r3.json" 'd["key"]')/failed.json"
run_build "$work/r4.json" "$bad"
check "broken sources again: exit 1" test "$rc" -eq 1
check "broken sources again: not rebuilt" test "$(jget "$work/r4.json" 'd["build_seconds"] == 0')" = True
check "broken sources again: the same log" test "$(jget "$work/r4.json" 'd["log"]')" = "$log3"
check "no temporary directory left" test -z "$(ls -A "$work/tmp")"

# 4 and 5: a build that takes long (a sleep before MAKE's commands; the sources differ, so does the key)
slow=$work/src-slow
make_src "$slow"
sed -i 's/^MAKE\[0\]="/MAKE[0]="sleep 67.5 \&\& /' "$slow/agent-test-driver-1.0/dkms.conf"
entries_before=$(ls -A "$builds" | sort)
run_build "$work/r5.json" "$slow" --timeout 12
check "timeout: exit 1" test "$rc" -eq 1
check "timeout: a progress line after 10 s (elapsed, last log line)" grep -qE 'building agent-test-driver-1.0: 1[0-9] s: ' "$work/r5.json.err"
check "timeout: reason build_timeout" test "$(jget "$work/r5.json" 'd["reason"]')" = build_timeout
check "timeout: no temporary directory left" test -z "$(ls -A "$work/tmp")"
# (The patterns' brackets keep pgrep from matching the shell that runs it.)
check "timeout: no process of the build left" bash -c "! pgrep -f '[s]leep 67.5'"

slow2=$work/src-slow2
make_src "$slow2"
sed -i 's/^MAKE\[0\]="/MAKE[0]="sleep 68.5 \&\& /' "$slow2/agent-test-driver-1.0/dkms.conf"
TMPDIR=$work/tmp "$AGENT" build --root "$node" --sources "$slow2" --json >"$work/r6.json" 2>"$work/r6.err" &
apid=$!
for _ in $(seq 1 100); do pgrep -f 'sleep 68.5' >/dev/null && break; sleep 0.2; done
check "SIGTERM: the build was running" pgrep -f 'sleep 68.5'
kill -TERM "$apid"
rc=0
wait "$apid" || rc=$?
cat "$work/r6.err" >&2
check "SIGTERM: exit 1" test "$rc" -eq 1
check "SIGTERM: reason interrupted" test "$(jget "$work/r6.json" 'd["reason"]')" = interrupted
check "SIGTERM: no temporary directory left" test -z "$(ls -A "$work/tmp")"
check "SIGTERM: no process of the build left" bash -c "! pgrep -f '[s]leep 68.5' && ! pgrep -f '$work/tm[p]/'"
entries_after=$(ls -A "$builds" | sort)
# The timed-out build is recorded (a failure of these inputs); the interrupted one is not, and
# nothing half-written (.tmp-*) is left.
check "SIGTERM: nothing of the interrupted build in the cache" test "$(comm -13 <(echo "$entries_before") <(echo "$entries_after") | wc -l)" -eq 1
check "SIGTERM: no temporary cache entry" bash -c "! ls -A '$builds' | grep -q '^\.tmp-'"

# 6. signed
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/O=agent tests/CN=agent build-node signing" \
  -addext "keyUsage=digitalSignature" -keyout "$work/sign.key" -out "$work/sign.crt" 2>/dev/null
openssl req -new -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=another" -keyout "$work/other.key" \
  -out "$work/other.crt" 2>/dev/null
run_build "$work/r7.json" "$src" --signing-key "$work/sign.key" --signing-cert "$work/sign.crt"
check "signed: exit 0" test "$rc" -eq 0
check "signed: built" test "$(jget "$work/r7.json" 'd["result"]')" = built
check "signed: another key than unsigned" test "$(jget "$work/r7.json" 'd["key"]')" != "$key"
check "signed: the signer in the result" test "$(jget "$work/r7.json" 'd["signer"]["name"]')" = "agent tests: agent build-node signing"
mapfile -t smods < <(jget "$work/r7.json" '"\n".join(m["path"] for m in d["modules"])')
for m in "${smods[@]}"; do
  check "signed: $(basename "$m") ends with the kernel's signature trailer" \
    bash -c "tail -c 28 '$m' | grep -q '~Module signature appended~'"
done
check "signed: agent kabi check reads the signer" bash -c "'$AGENT' kabi check --json --symvers '$CACHE/$abi/Module.symvers' \
  --kernel-modules '$CACHE/$abi/modules' '${smods[0]}' | grep -q 'agent build-node signing'"
# Other sources than r7's: a cache hit would sign nothing and so read no key (7. below).
ok_src=$work/src-other
make_src "$ok_src"
echo '# another source tree' >>"$ok_src/agent-test-driver-1.0/dkms.conf"
run_build "$work/r8.json" "$ok_src" --signing-key "$work/other.key" --signing-cert "$work/sign.crt"
check "a key that is not the certificate's: exit 2" test "$rc" -eq 2
check "a key that is not the certificate's: the file named" grep -q "$work/other.key" "$work/r8.json.err"
cp -al "$node" "$work/node-enf" 2>/dev/null || cp -a "$node" "$work/node-enf"
mkdir -p "$work/node-enf/sys/module/module/parameters"
rm -f "$work/node-enf/sys/module/module/parameters/sig_enforce" # a hard link to the node's: not written through
echo Y >"$work/node-enf/sys/module/module/parameters/sig_enforce"
rc=0
TMPDIR=$work/tmp "$AGENT" build --root "$work/node-enf" --sources "$src" --json >"$work/r9.json" 2>"$work/r9.err" || rc=$?
check "enforced, no key: exit 1" test "$rc" -eq 1
check "enforced, no key: build_unsigned_enforced" test "$(jget "$work/r9.json" 'd["reason"]')" = build_unsigned_enforced
check "enforced, no key: nothing built" test "$(jget "$work/r9.json" 'd["build_seconds"] == 0')" = True
rm -rf "$work/node-enf"

# 7. the key hidden from the build. The key and certificate as a Secret's volume lays them out
# (links through ..data to a timestamped directory), mode 0644: a warning.
sec=$work/secret
mkdir -p "$sec/..2026_12_07_11_00_00.1"
cp "$work/sign.key" "$sec/..2026_12_07_11_00_00.1/key"
cp "$work/sign.crt" "$sec/..2026_12_07_11_00_00.1/crt"
chmod 0644 "$sec/..2026_12_07_11_00_00.1/key"
ln -s ..2026_12_07_11_00_00.1 "$sec/..data"
ln -s ..data/key "$sec/key"
ln -s ..data/crt "$sec/crt"
real_key=$(readlink -f "$sec/key")
check "hidden key: the data is there (the key readable outside the build by both paths)" \
  bash -c "grep -q 'PRIVATE KEY' '$sec/key' && grep -q 'PRIVATE KEY' '$real_key'"
probe=$work/src-probe
make_src "$probe"
cat >"$probe/agent-test-driver-1.0/probe.sh" <<EOF
#!/bin/sh
# Run by dkms's MAKE, as root, in the build's namespace: what of the signing key can it reach?
try() { if head -c 1 "\$2" >/dev/null 2>&1 && [ -s "\$2" ]; then echo "agent-probe: \$1 readable"; else echo "agent-probe: \$1 hidden"; fi; }
echo "agent-probe: ran as uid \$(id -u)"
try control "\$0"
try key-given '$sec/key'
try key-real '$real_key'
try key-dir-listing "\$(ls -A '$sec' 2>/dev/null | head -n 1 | sed 's|^|$sec/|')"
p=\$\$
while [ "\$p" -gt 1 ] && [ "\$(cat /proc/\$p/comm 2>/dev/null)" != agent ]; do
  p=\$(sed -n 's/^PPid:[[:space:]]*//p' /proc/\$p/status)
done
echo "agent-probe: agent pid \$p comm \$(cat /proc/\$p/comm 2>/dev/null)"
try key-via-agent-root "/proc/\$p/root$sec/key"
try key-via-agent-root-real "/proc/\$p/root$real_key"
try host-root '$node/proc/version'
if grep -qa -- '--signing-key' /proc/\$p/cmdline; then
  if grep -qa 'secret/key' /proc/\$p/cmdline; then echo "agent-probe: the agent's cmdline names the key"; else echo "agent-probe: the agent's cmdline masks the key"; fi
fi
if env | grep -q 'secret/key'; then echo "agent-probe: the environment names the key"; else echo "agent-probe: environment clean"; fi
if umount '$sec' 2>/dev/null; then echo "agent-probe: unmounted the hiding"; try key-after-umount '$sec/key'; else echo "agent-probe: cannot unmount"; fi
EOF
sed -i 's/^MAKE\[0\]="/MAKE[0]="sh $BUILD_DIR\/probe.sh \&\& /' "$probe/agent-test-driver-1.0/dkms.conf"
rc=0
AGENT_TEST_KEY=$sec/key TMPDIR=$work/tmp "$AGENT" build --root "$node" --sources "$probe" --json \
  --signing-key "$sec/key" --signing-cert "$sec/crt" >"$work/r10.json" 2>"$work/r10.err" || rc=$?
cat "$work/r10.err" >&2
check "hidden key: exit 0" test "$rc" -eq 0
check "hidden key: built and signed" test "$(jget "$work/r10.json" 'd["result"] + "/" + d["signer"]["name"]')" = \
  "built/agent tests: agent build-node signing"
check "hidden key: a key others may read is warned about (0644)" grep -q 'signing key .* has mode 0644' "$work/r10.err"
log10=$(jget "$work/r10.json" 'd.get("log") or ""')
check "hidden key: the build's log is kept" test -s "$log10"
check "hidden key: the probe ran, as root" grep -q '^agent-probe: ran as uid 0' "$log10"
check "hidden key: the probe read its control file" grep -q '^agent-probe: control readable' "$log10"
check "hidden key: the probe found the agent's pid" grep -qE '^agent-probe: agent pid [0-9]+ comm agent$' "$log10"
for what in key-given key-real key-dir-listing key-via-agent-root key-via-agent-root-real host-root; do
  check "hidden key: $what hidden" grep -q "^agent-probe: $what hidden" "$log10"
done
check "hidden key: no probe read anything but its control" bash -c "! grep '^agent-probe: .* readable' '$log10' | grep -v control"
check "hidden key: the environment names no key" grep -q '^agent-probe: environment clean' "$log10"
check "hidden key: the agent's cmdline (read: it has --signing-key) does not name it" \
  grep -q "^agent-probe: the agent's cmdline masks the key" "$log10"
check "hidden key: what hides it cannot be unmounted" grep -q '^agent-probe: cannot unmount' "$log10"
# A cache hit signs nothing, so it reads no key: garbage in the key's place is not noticed.
printf 'not a key\n' >"$work/garbage.key"
chmod 0400 "$work/garbage.key"
run_build "$work/r11.json" "$probe" --signing-key "$work/garbage.key" --signing-cert "$sec/crt"
check "cache hit with garbage for a key: exit 0, cached (the key not read)" \
  test "$rc/$(jget "$work/r11.json" 'd["result"]')" = 0/cached
# A build reads it (before dkms runs, and again to sign).
run_build "$work/r12.json" "$ok_src" --signing-key "$work/garbage.key" --signing-cert "$sec/crt"
check "a build with a key that does not parse: exit 2" test "$rc" -eq 2
check "a build with a key that does not parse: the file named" grep -q "$work/garbage.key" "$work/r12.json.err"

check "the image's /usr/src, /usr/lib, /lib/modules and /var/lib/dkms are as they were" test "$(image_state)" = "$image_before"

if ((failures)); then
  echo "build-node: $failures check(s) failed" >&2
  exit 1
fi
echo "build-node: all checks passed"
