#!/usr/bin/env bash
# `agent kabi matrix` and `agent kabi diff` on real Debian kernels (roles k61, k61_same, k61_old
# of tests/e2e/fetch-kernels.sh), given as module trees and as unpacked roots whose absolute
# `build` links name headers that, on "this machine" (a scratch directory), are a decoy: every
# link must resolve inside the kernel given. The expected answers come from the kernels' own
# files, compared here independently of the agent: the Module.symvers CRC lines (same-CRC twins
# are one group) and the headers' include/generated/utsrelease.h (the release names).
# Exits 77 (skipped) when a role's kernel is not fetched.
# Usage: kabi-matrix-realdata.sh AGENT
set -uo pipefail
agent=$1
cache=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
passed=0 failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
skip() { echo "SKIP: $1" >&2; exit 77; }

role() { sed -n "s/^$1=//p" "$cache/roles.env" 2>/dev/null; }
declare -A dir rel
for r in k61 k61_same k61_old; do
  abi=$(role $r)
  [[ -n $abi && -f $cache/$abi/.done ]] || skip "role $r not fetched (bash tests/e2e/fetch-kernels.sh)"
  dir[$r]=$cache/$abi
  rel[$r]=$(basename "$(readlink -f "$cache/$abi/modules")")
  [[ -d ${dir[$r]}/root/usr/src/linux-headers-${rel[$r]} ]] || skip "role $r: no headers in ${dir[$r]}/root"
done

# Hard links of the real trees (~4,000 files each): the scratch directory must share the cache's
# filesystem; under the cache when $TMPDIR does not.
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-matrix-real.XXXXXX")
if ! ln "${dir[k61]}/Module.symvers" "$work/.probe" 2>/dev/null; then
  rm -rf "$work"
  work=$(mktemp -d "$cache/.agent-matrix-real.XXXXXX")
fi
rm -f "$work/.probe"
trap 'rm -rf "$work"' EXIT

run() { # NAME WANT_EXIT -- ARGS...: stdout in $work/out, stderr in $work/err
  local name=$1 want=$2 rc
  shift 3
  "$agent" kabi "$@" >"$work/out" 2>"$work/err"
  rc=$?
  if [[ $rc -eq $want ]]; then pass "$name: exit $rc"; else fail "$name: exit $rc (want $want): $(head -c 600 "$work/err")"; fi
}
json() {
  if python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$work/out" "$2" 2>>"$work/err"; then pass "$1"; else fail "$1: $2 on $(head -c 600 "$work/out")"; fi
}
contains() { if grep -qF -- "$2" "$3"; then pass "$1"; else fail "$1: '$2' not in $(head -c 600 "$3")"; fi; }
lacks() { if grep -qF -- "$2" "$3"; then fail "$1: '$2' in the output"; else pass "$1"; fi; }

k55=${rel[k61_same]} k56=${rel[k61]}
# The kernel's own words: the release of each headers package, and whether the twins' CRC tables
# are the same (symbol and CRC columns, sorted).
uts() { sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' "$1/include/generated/utsrelease.h"; }
want55=$(uts "${dir[k61_same]}/root/usr/src/linux-headers-$k55")
want56=$(uts "${dir[k61]}/root/usr/src/linux-headers-$k56")
[[ -n $want55 && -n $want56 && $want55 != "$want56" ]] || { echo "FAIL utsrelease.h unreadable"; exit 1; }
crcs() { cut -f1,2 "$1" | sort; }
if cmp -s <(crcs "${dir[k61_same]}/Module.symvers") <(crcs "${dir[k61]}/Module.symvers"); then want_groups=1; else want_groups=2; fi
echo "independently: $want55 and $want56, CRC tables $([[ $want_groups == 1 ]] && echo identical || echo different): $want_groups group(s)"

# "This machine": 56's headers with every CRC changed, at the absolute path the links name.
machine=$work/machine
decoy=$machine/usr/src/linux-headers-$k56
mkdir -p "$decoy/include/generated"
sed 's/^0x[0-9a-f]\{8\}/0x0badc0de/' "${dir[k61]}/Module.symvers" >"$decoy/Module.symvers"
printf '#define UTS_RELEASE "9.9.9-decoy"\n' >"$decoy/include/generated/utsrelease.h"
if cmp -s <(crcs "$decoy/Module.symvers") <(crcs "${dir[k61]}/Module.symvers"); then fail "the decoy differs from 56"; else pass "the decoy differs from 56"; fi

# Unpacked roots: each kernel's tree, and its headers at the path its build link names; 56's
# link is absolute to the decoy's path, 55's is Debian's own (/usr/src/linux-headers-<kver>).
for v in 55 56; do
  if [[ $v == 55 ]]; then src=${dir[k61_same]} k=$k55 headers=/usr/src/linux-headers-$k55
  else src=${dir[k61]} k=$k56 headers=$decoy; fi
  r=$work/root$v
  mkdir -p "$r/lib/modules" "$(dirname "$r$headers")"
  cp -al "$src/root/lib/modules/$k" "$r/lib/modules/" || { echo "FAIL cp -al $src"; exit 1; }
  cp -al "$src/root/usr/src/linux-headers-$k" "$r$headers" || { echo "FAIL cp -al headers"; exit 1; }
  rm "$r/lib/modules/$k/build"
  ln -s "$headers" "$r/lib/modules/$k/build"
done
[[ $(readlink "$work/root56/lib/modules/$k56/build") == "$decoy" && -f $work/root56/lib/modules/$k56/build/Module.symvers ]] &&
  pass "56's build link leads to the decoy on this machine" || fail "56's build link leads to the decoy on this machine"

bundle=$work/bundle
mkdir -p "$bundle"
i915=$(sed -n 's|^\(kernel/[^:]*/i915\.ko[^:]*\):.*|\1|p' "${dir[k61_same]}/modules/modules.dep")
cp "${dir[k61_same]}/modules/$i915" "$bundle/" || { echo "FAIL no i915 in $k55"; exit 1; }

# Control: the decoy, if read, is another answer.
run "control: the decoy is a rebuild" 1 -- matrix --json --bundle "$bundle" "$decoy/Module.symvers" "$work/root55"
json "control: two groups" 'len(j["groups"]) == 2 and j["kernels"][0]["verdict"] == "rebuild"'

want_exit=$([[ $want_groups == 1 ]] && echo 0 || echo 1)
# The roots: the headers inside each, found by its link; never the decoy.
run "matrix: the unpacked roots" "$want_exit" -- matrix --json --bundle "$bundle" "$work/root55" "$work/root56"
json "roots: $want_groups group(s), as their CRC tables say" "len(j['groups']) == $want_groups"
json "roots: named by release" "[k['release'] for k in j['kernels']] == ['$want55', '$want56'] and all(k['release_from'] == 'vermagic' for k in j['kernels'])"
json "roots: the root's own headers" "j['kernels'][1]['symvers'] == '$work/root56$decoy/Module.symvers' and j['kernels'][0]['symvers'] == '$work/root55/usr/src/linux-headers-$k55/Module.symvers'"
run "matrix text: the unpacked roots" "$want_exit" -- matrix --bundle "$bundle" "$work/root55" "$work/root56"
contains "roots text: the group" "these 2 kernels: $want55, $want56" "$work/out"
lacks "roots text: nothing of the decoy" "9.9.9-decoy" "$work/out"
lacks "roots text: no path of the machine" "CRCs from $machine" "$work/out"

# The trees alone: links out of them not followed (said so); each takes its own modules' CRCs.
t55=$work/root55/lib/modules/$k55 t56=$work/root56/lib/modules/$k56
run "matrix: the trees alone" "$want_exit" -- matrix --json --bundle "$bundle" "$t55" "$t56"
json "trees: $want_groups group(s), as their CRC tables say" "len(j['groups']) == $want_groups"
json "trees: named by release" "[k['release'] for k in j['kernels']] == ['$want55', '$want56']"
json "trees: their own modules" "all(k['symvers'].startswith(k['kernel'] + ' (its modules') for k in j['kernels'])"
json "trees: the build link not followed, said" "any('build -> $decoy: not inside $t56' in n for n in j['kernels'][1]['notes'])"
lacks "trees: nothing of the decoy" "9.9.9-decoy" "$work/out"

# Named on the command line (NAME=PATH): that name in the text and the JSON, the path and the
# release (utsrelease.h's, read above) beside it.
run "matrix: NAME=PATH" "$want_exit" -- matrix --json --bundle "$bundle" "bookworm-55=$work/root55" "$work/root56"
json "named: the name, the path given, the release" "[k['name'] for k in j['kernels']] == ['bookworm-55', '$want56'] and j['kernels'][0]['kernel'] == '$work/root55' and j['kernels'][0]['release'] == '$want55'"
run "matrix text: NAME=PATH" "$want_exit" -- matrix --bundle "$bundle" "bookworm-55=$work/root55" "$work/root56"
contains "named text: the release beside the name" "release $want55, given as $work/root55; CRCs from" "$work/out"
contains "named text: the name in the group" "these 2 kernels: bookworm-55, $want56" "$work/out"
# A Module.symvers alone in its headers package's directory, without utsrelease.h: named after
# that directory (linux-headers-<kver>), not by its path.
lone=$work/lone/linux-headers-$k56
mkdir -p "$lone"
ln "${dir[k61]}/Module.symvers" "$lone/Module.symvers" || cp "${dir[k61]}/Module.symvers" "$lone/Module.symvers"
run "matrix: a lone Module.symvers" "$want_exit" -- matrix --json --bundle "$bundle" "$t55" "$lone/Module.symvers"
json "lone: named by its headers' directory" "j['kernels'][1]['release'] == '$want56' and j['kernels'][1]['release_from'] == 'headers directory' and j['kernels'][1]['kernel'] == '$lone/Module.symvers'"
run "matrix text: a lone Module.symvers" "$want_exit" -- matrix --bundle "$bundle" "$t55" "$lone/Module.symvers"
if grep -qE "^${want56//./\\.} +CRCs from $lone/Module.symvers\$" "$work/out"; then pass "lone text: by release"
else fail "lone text: by release: no '$want56  CRCs from $lone/Module.symvers' in $(head -c 900 "$work/out")"; fi
lacks "lone text: not by path" "this kernel: $lone" "$work/out"

# diff: by release each side, labelled counts equal to the kernel files' own differences.
run "diff: the twin roots" 0 -- diff "$work/root55" "$work/root56"
contains "diff twins: by release" "$want55 -> $want56: 0 symbols changed" "$work/out"
old=$(uts "${dir[k61_old]}/root/usr/src/linux-headers-${rel[k61_old]}")
read -r w_changed w_crc w_added w_removed w_moved w_type w_ns < <(python3 - "${dir[k61_old]}/Module.symvers" "${dir[k61]}/Module.symvers" <<'EOF'
import sys
def table(p):
    t = {}
    for line in open(p):
        f = line.rstrip("\n").split("\t")
        t[f[1]] = (int(f[0], 16), f[2], f[3], f[4] if len(f) > 4 else "")
    return t
a, b = table(sys.argv[1]), table(sys.argv[2])
n = dict(changed=0, crc=0, added=0, removed=0, moved=0, type=0, ns=0)
for s in set(a) | set(b):
    if s not in a: n["added"] += 1; n["changed"] += 1; continue
    if s not in b: n["removed"] += 1; n["changed"] += 1; continue
    x, y = a[s], b[s]
    d = [x[0] != y[0], x[1] != y[1], x[2] != y[2], x[3] != y[3]]
    for k, v in zip(("crc", "moved", "type", "ns"), d): n[k] += v
    n["changed"] += any(d)
print(*n.values())
EOF
)
run "diff: $old to $want56" 1 -- diff "${dir[k61_old]}" "${dir[k61]}"
contains "diff old: by release" "$old -> $want56: $w_changed symbols changed" "$work/out"
for pair in "CRC changed:|$w_crc" "added:|$w_added" "removed:|$w_removed" "moved to another module:|$w_moved" \
  "export type changed:|$w_type" "namespace changed:|$w_ns"; do
  label=${pair%|*} n=${pair#*|}
  if grep -qE "^  $label +$n\$" "$work/out"; then pass "diff old: $label $n"; else fail "diff old: $label $n not in $(head -c 900 "$work/out")"; fi
done
contains "diff old: old side named once" "old  $old  given as ${dir[k61_old]}; CRCs from" "$work/out"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
