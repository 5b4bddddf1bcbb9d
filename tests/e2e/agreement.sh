#!/usr/bin/env bash
# The kernel-agreement suite: for every case, the real kernel (booted under qemu, once per
# kernel, see run-vm.sh) says what init_module returns, and the agent's prediction
#   agent kabi check --json --symvers <kernel>/Module.symvers --kernel-modules <kernel>/modules M
# must agree: same errno, verdict "loadable" iff the errno is 0.
#
# Usage: agreement.sh [--kernel-only] [AGENT]
#   AGENT          the agent binary (default $AGENT, else build/agent/agent of this repository)
#   --kernel-only  only ask the kernels (no agent needed) and print their answers
# Env: AGENT_KERNEL_CACHE   kernel cache (fetch-kernels.sh); VM results are cached under
#                           its e2e-results/<abi>/<sha256 of the case module>, case files are
#                           kept under e2e-cases/<abi>/ for reruns by hand
#      AGENT_E2E_FRESH=1    ignore cached VM results (boot every kernel again)
#      AGENT_E2E_POLICY     passed as --policy to the agent when set (strict|upstream)
# The target's kernel image is passed as --vmlinuz (or --kernel-image) when the agent's
# `kabi check --help` lists such an option.
# Output: one line per case "PASS|FAIL <abi>/<case> kernel=... agent=..." (on FAIL followed by
# the kernel's messages and the agent's reasons, indented), then "N passed, M failed".
# Exit: 0 all agree, 1 some disagree (or a kernel gave no answer), 2 bad setup.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE

die() { echo "agreement: $*" >&2; exit 2; }

kernel_only=0
if [[ ${1:-} == --kernel-only ]]; then kernel_only=1; shift; fi
[[ $# -le 1 ]] || die "usage: agreement.sh [--kernel-only] [AGENT]"
AGENT=${1:-${AGENT:-$REPO/build/agent/agent}}
if [[ $kernel_only -eq 0 ]]; then
  [[ -x $AGENT ]] || die "no agent binary at $AGENT (build it, or pass its path, or --kernel-only)"
fi

K61_OLD=6.1.0-47 K61_PREV=6.1.0-55 K61=6.1.0-56 K612_OLD=6.12.94+deb13 K612=6.12.107+deb13
bash "$HERE/fetch-kernels.sh" "$K61_OLD" "$K61_PREV" "$K61" "$K612_OLD" "$K612" >&2

mod() { # mod ABI NAME -> path of the in-tree module (.ko or .ko.xz) of that kernel
  local f
  for f in "$CACHE/$1/modules/kernel/drivers/gpu/drm/$2/$2.ko" \
    "$CACHE/$1/modules/kernel/drivers/gpu/drm/$2/$2.ko.xz"; do
    [[ -f $f ]] && { echo "$f"; return 0; }
  done
  die "no $2 module in $CACHE/$1"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
cases="$work/cases"   # lines: ABI CASE PATH
: >"$cases"
add() { echo "$1 $2 $3" >>"$cases"; }

# Cross-kernel cases: in-tree modules of one ABI on another kernel.
add "$K61" "i915-own" "$(mod "$K61" i915)"
add "$K61" "i915-from-$K61_PREV" "$(mod "$K61_PREV" i915)"
add "$K61" "i915-from-$K61_OLD" "$(mod "$K61_OLD" i915)"
add "$K612" "xe-own" "$(mod "$K612" xe)"
add "$K612" "i915-from-$K612_OLD" "$(mod "$K612_OLD" i915)"
add "$K612" "xe-from-$K612_OLD" "$(mod "$K612_OLD" xe)"
add "$K612_OLD" "i915-from-$K612" "$(mod "$K612" i915)"
add "$K612_OLD" "xe-from-$K612" "$(mod "$K612" xe)"

# Rule cases: one edit each of a module (mkcases.py), on the target kernel.
rule_cases() { # TARGET_ABI SOURCE_ABI MODULE PREFIX [mkcases.py options...]
  local target=$1 source=$2 module=$3 prefix=$4 dir="$CACHE/e2e-cases/$1" name out
  shift 4
  mkdir -p "$dir"
  python3 "$HERE/mkcases.py" --prefix "$prefix" --symvers "$CACHE/$target/Module.symvers" "$@" \
    "$(mod "$source" "$module")" "$dir" 2>"$work/mkcases.err" >"$work/mkcases.out" \
    || { cat "$work/mkcases.err" >&2; die "mkcases.py failed for $module of $source"; }
  while IFS=$'\t' read -r name _ out; do add "$target" "$name" "$out"; done <"$work/mkcases.out"
}
rule_cases "$K61" "$K61" i915 i915-
rule_cases "$K612" "$K612" xe xe-
# Signed modules edited with the signature kept: a key the kernel trusts makes the mismatch
# fatal (EKEYREJECTED); an unknown key is not checked at all (no signed attributes in the
# PKCS#7), the module counts as unsigned and the other rules decide.
rule_cases "$K61" "$K61" i915 i915-signed- --keep-signature --only vermagic_release
rule_cases "$K61" "$K61_PREV" i915 "i915-from-$K61_PREV-signed-" --keep-signature \
  --only vermagic_release,crc
rule_cases "$K612" "$K612" xe xe-signed- --keep-signature --only vermagic_release

# The kernels' answers: cached by ABI + sha256 of the module file, else one boot per kernel.
results="$CACHE/e2e-results"
mapfile -t abis < <(cut -d' ' -f1 "$cases" | sort -u)
for abi in "${abis[@]}"; do
  mkdir -p "$results/$abi"
  manifest="$work/manifest.$abi"
  : >"$manifest"
  while read -r a case path; do
    [[ $a == "$abi" ]] || continue
    sha=$(sha256sum "$path" | cut -d' ' -f1)
    echo "$case $sha" >>"$work/sha.$abi"
    if [[ ${AGENT_E2E_FRESH:-0} == 1 || ! -f $results/$abi/$sha ]]; then
      echo "$case $path" >>"$manifest"
    fi
  done <"$cases"
  [[ -s $manifest ]] || continue
  rc=0
  bash "$HERE/run-vm.sh" -o "$work/vm.$abi" "$abi" "$manifest" || rc=$?
  [[ $rc -le 1 ]] || die "run-vm.sh failed for $abi"
  cp "$work/vm.$abi.log" "$results/$abi/last-boot.log"
  # store each answer: line 1 "errno N", then the kernel's messages for the case
  python3 - "$work/vm.$abi" "$work/sha.$abi" "$results/$abi" <<'PY'
import os, sys
vm, shas, outdir = sys.argv[1:4]
sha = dict(l.split() for l in open(shas))
dmesg = {}
for l in open(vm + ".dmesg"):
    case, _, msg = l.rstrip("\n").partition("\t")
    dmesg.setdefault(case, []).append(msg)
for l in open(vm):
    case, errno = l.split()
    path = os.path.join(outdir, sha[case])
    with open(path + ".tmp", "w") as f:
        f.write("errno %s\n" % errno)
        f.writelines(m + "\n" for m in dmesg.get(case, []))
    os.replace(path + ".tmp", path)
PY
done

# The agent's predictions, then the comparison. The kernel image carries the certificates the
# kernel trusts for module signatures: passed when the agent has an option for it.
image_opt=""
if [[ $kernel_only -eq 0 ]]; then
  image_opt=$("$AGENT" kabi check --help 2>&1 | grep -oE -- '--(vmlinuz|kernel-image)\b' | head -1 || true)
fi
while read -r abi case path; do
  out="$work/agent.$abi.$case"
  if [[ $kernel_only -eq 1 ]]; then echo "-" >"$out.rc"; continue; fi
  args=(kabi check --json --symvers "$CACHE/$abi/Module.symvers" --kernel-modules "$CACHE/$abi/modules")
  [[ -n ${AGENT_E2E_POLICY:-} ]] && args+=(--policy "$AGENT_E2E_POLICY")
  [[ -n $image_opt ]] && args+=("$image_opt" "$CACHE/$abi/vmlinuz")
  rc=0
  "$AGENT" "${args[@]}" "$path" >"$out.json" 2>"$out.err" || rc=$?
  echo "$rc" >"$out.rc"
done <"$cases"

python3 - "$cases" "$work" "$results" "$kernel_only" <<'PY'
import errno as E, json, os, sys
cases, work, results, kernel_only = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

def relevant(msgs):
    """The kernel's messages, the ones naming the verdict's cause first."""
    tiers = (("disagrees", "Unknown symbol", "no symbol version", "version magic", "namespace",
              "Key was rejected", "unsigned module"), ("kernel tainted",))

    def rank(m):
        return next((i for i, keys in enumerate(tiers) if any(k in m for k in keys)), len(tiers))
    return sorted(msgs, key=rank)


def ename(n):
    return "OK" if n == 0 else E.errorcode.get(n, "E?")

pw = fl = 0
for line in open(cases):
    abi, case, path = line.split()
    label = "%s/%s" % (abi, case)
    sha = dict(l.split() for l in open(os.path.join(work, "sha." + abi)))[case]
    rfile = os.path.join(results, abi, sha)
    if not os.path.exists(rfile):
        print("FAIL %s kernel=no-answer agent=-" % label)
        fl += 1
        continue
    lines = open(rfile).read().splitlines()
    kerrno, kmsgs = int(lines[0].split()[1]), relevant(lines[1:])
    kernel = "%s(%d)" % (ename(kerrno), kerrno)
    if kernel_only:
        print("KERNEL %s kernel=%s %s" % (label, kernel, kmsgs[0] if kmsgs else ""))
        continue
    base = os.path.join(work, "agent.%s.%s" % (abi, case))
    rc = open(base + ".rc").read().strip()
    reasons, agent, ok = [], None, False
    try:
        doc = json.load(open(base + ".json"))
        m = doc["modules"][0]
        verdict, aerrno = m["verdict"], int(m["errno"])
        reasons = m.get("reasons", [])
        agent = "%s:%s(%d)" % (verdict, ename(aerrno), aerrno)
        ok = (aerrno == kerrno and verdict == ("loadable" if kerrno == 0 else "refused")
              and rc == ("0" if kerrno == 0 else "1"))
        if aerrno == kerrno and not ok:
            agent += ",exit=" + rc
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        agent = "error(exit=%s,%s)" % (rc, type(e).__name__)
    print("%s %s kernel=%s agent=%s" % ("PASS" if ok else "FAIL", label, kernel, agent))
    if ok:
        pw += 1
        continue
    fl += 1
    for m in kmsgs[:5]:
        print("    kernel: " + m)
    for r in reasons[:5]:
        print("    agent:  %s %s %s" % (r.get("code"), r.get("symbol") or "-", r.get("message") or ""))
    err = open(base + ".err").read().strip()
    if err:
        print("    agent stderr: " + err.splitlines()[0])
if not kernel_only:
    print("%d passed, %d failed" % (pw, fl))
sys.exit(1 if fl else 0)
PY
