#!/bin/bash
# Benchmark: `agent kabi check` against the two tools that answer the same question today, on a
# real module set - i915 and its in-tree dependencies (modules.dep) from one Debian ABI, checked
# against another ABI's Module.symvers (a mismatch case: every module is refused):
#   agent         agent kabi check --symvers S --kernel-modules TARGET_TREE MODULES...
#   depmod        depmod -n -e -E S -b BASE KVER   (depmod's own CRC check of the same modules,
#                 in a base dir holding just those modules under lib/modules/KVER)
#   weak-modules  RHEL's algorithm: modprobe --dump-modversions | join against the sorted symvers
#                 (bench/weak-modules-check.sh)
# The agent runs twice: as is (it finds the target's vmlinuz beside the tree, extracts the kernel's
# built-in certificates and verifies every module signature, as the kernel does first), and on a
# hard-linked copy of the target tree without a kernel image beside it, which is the same check
# depmod and weak-modules make (CRCs, symbols) and nothing more.
# Wall time: hyperfine medians (warm cache). Peak RSS: /usr/bin/time %M, median of several runs
# (for weak-modules: its largest single process). Prints a markdown table and writes it to
# bench/results.md.
#
# Needs the kernels fetched by tests/e2e/fetch-kernels.sh, hyperfine, GNU time, kmod.
# Environment:
#   AGENT_KERNEL_CACHE  default ~/.cache/intel-gpu-agent/kernels
#   BENCH_FROM          ABI the modules come from (default: the kernel role k61_same of
#                       tests/e2e/fetch-kernels.sh, 6.1.0-55 while the archive serves it)
#   BENCH_TO            ABI whose Module.symvers and module tree are the target (default: the
#                       role k61_old, 6.1.0-47 while served: other CRCs than BENCH_FROM)
#   BENCH_MODULE        top module (default i915)
#   BENCH_RUNS          hyperfine runs per tool (default 30), BENCH_WARMUP (default 5)
#   BENCH_RSS_RUNS      runs for peak RSS (default 5)
#   AGENT               the agent binary (default <repo>/build/agent/agent, rebuilt with ninja
#                       when <repo>/build is a ninja build dir)
#   BENCH_RESULTS       output file (default <repo>/bench/results.md)
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${AGENT_KERNEL_CACHE:-$HOME/.cache/intel-gpu-agent/kernels}
die() { echo "bench: $*" >&2; exit 1; }
role() { bash "$root/tests/e2e/fetch-kernels.sh" --role "$1" || die "no kernel for role $1"; }
from=${BENCH_FROM:-$(role k61_same)}
to=${BENCH_TO:-$(role k61_old)}
top=${BENCH_MODULE:-i915}
runs=${BENCH_RUNS:-30}
warmup=${BENCH_WARMUP:-5}
rss_runs=${BENCH_RSS_RUNS:-5}
agent=${AGENT:-$root/build/agent/agent}
results=${BENCH_RESULTS:-$here/results.md}
depmod=$(command -v depmod || echo /sbin/depmod)

for tool in hyperfine modprobe join python3; do command -v "$tool" >/dev/null || die "$tool not found (tests/setup.sh)"; done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
[[ -x $depmod ]] || die "depmod not found (apt-get install kmod)"
for abi in "$from" "$to"; do
  [[ -f $cache/$abi/Module.symvers && -d $cache/$abi/modules ]] \
    || die "kernel $abi not in $cache (run tests/e2e/fetch-kernels.sh)"
done
if [[ -z ${AGENT:-} && -f $root/build/build.ninja ]]; then
  ninja -C "$root/build" agent >/dev/null || die "ninja -C $root/build agent failed"
fi
[[ -x $agent ]] || die "no agent binary at $agent (build it: cmake -G Ninja -B build && ninja -C build agent)"

from_tree=$(cd "$cache/$from/modules" && pwd -P)
to_tree=$(cd "$cache/$to/modules" && pwd -P)
symvers=$cache/$to/Module.symvers
kver=$(basename "$to_tree")

# The module set: TOP and its dependencies, as modules.dep of the source ABI lists them.
line=$(grep -m1 -E "^([^:]*/)?$top\.ko(\.[a-z]+)?:" "$from_tree/modules.dep") \
  || die "$top not in $from_tree/modules.dep"
rel_paths=("${line%%:*}")
read -r -a deps <<<"${line#*:}"
rel_paths+=("${deps[@]}")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base=$tmp/base
modules=()
for rel in "${rel_paths[@]}"; do
  mkdir -p "$base/lib/modules/$kver/$(dirname "$rel")"
  cp "$from_tree/$rel" "$base/lib/modules/$kver/$rel"
  modules+=("$base/lib/modules/$kver/$rel")
done
printf '%s\n' "${rel_paths[@]}" >"$base/lib/modules/$kver/modules.order"
# The target tree again, with no kernel image beside it (hard links; symlinks across filesystems).
bare_tree=$tmp/bare/lib/modules/$kver
mkdir -p "$(dirname "$bare_tree")"
cp -al "$to_tree" "$bare_tree" 2>/dev/null || { rm -rf "$bare_tree"; cp -as "$to_tree" "$bare_tree"; } \
  || die "cannot copy $to_tree"
bytes=$(cat "${modules[@]}" | wc -c)

q() { printf '%q ' "$@"; }
agent_args=(kabi check --symvers "$symvers" --kernel-modules "$to_tree" "${modules[@]}")
bare_args=(kabi check --symvers "$symvers" --kernel-modules "$bare_tree" "${modules[@]}")
cmd_agent=$(q "$agent" "${agent_args[@]}")
cmd_bare=$(q "$agent" "${bare_args[@]}")
cmd_depmod=$(q "$depmod" -n -e -E "$symvers" -b "$base" "$kver")
cmd_weak=$(q "$here/weak-modules-check.sh" "$symvers" "${modules[@]}")

# Each tool must actually reach the verdict (refused / CRC warnings), or the timing is moot.
verdict() {  # NAME ARGS...: the agent's verdict, from its JSON
  local name=$1 rc=0
  shift
  "$agent" "$@" --json >"$tmp/$name.json" 2>"$tmp/$name.err" || rc=$?
  [[ $rc -le 1 ]] || { cat "$tmp/$name.err" >&2; die "agent failed (exit $rc)"; }
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
m = d["modules"]
refused = sum(x["verdict"] == "refused" for x in m)
image = d["kernel"].get("kernel_image")
print("%d/%d modules refused, %d reasons, %s" % (refused, len(m), sum(len(x["reasons"]) for x in m),
      "signatures checked against " + image.rsplit("/", 1)[-1] if image else "no kernel image"))' "$tmp/$name.json"
}
agent_verdict=$(verdict agent "${agent_args[@]}")
bare_verdict=$(verdict bare "${bare_args[@]}")
"$depmod" -n -e -E "$symvers" -b "$base" "$kver" >/dev/null 2>"$tmp/depmod.err" || die "depmod failed"
depmod_verdict="$(grep -c 'disagrees about version' "$tmp/depmod.err" || true) 'disagrees about version' warnings"
"$here/weak-modules-check.sh" "$symvers" "${modules[@]}" >"$tmp/weak.out" 2>&1 && weak_rc=0 || weak_rc=$?
[[ $weak_rc -le 1 ]] || { cat "$tmp/weak.out" >&2; die "weak-modules-check failed"; }
weak_verdict="$(grep -c 'missing or with another CRC' "$tmp/weak.out" || true)/${#modules[@]} modules incompatible"

echo "bench: ${#modules[@]} modules ($((bytes / 1024)) KiB) from $from against $to's Module.symvers"
echo "bench: agent: $agent_verdict"
echo "bench: agent (no image): $bare_verdict"
echo "bench: depmod: $depmod_verdict; weak-modules: $weak_verdict"

hyperfine -N --style basic --warmup "$warmup" --runs "$runs" -i --export-json "$tmp/hyperfine.json" \
  -n agent "$cmd_agent" -n agent-no-image "$cmd_bare" -n depmod "$cmd_depmod" -n weak-modules "$cmd_weak" >&2

rss_median() {  # command words...
  local samples=()
  for ((i = 0; i < rss_runs; i++)); do
    /usr/bin/time -o "$tmp/rss" -f '%M' "$@" >/dev/null 2>&1 || true
    samples+=("$(tail -n 1 "$tmp/rss")")
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rss_agent=$(rss_median "$agent" "${agent_args[@]}")
rss_bare=$(rss_median "$agent" "${bare_args[@]}")
rss_depmod=$(rss_median "$depmod" -n -e -E "$symvers" -b "$base" "$kver")
rss_weak=$(rss_median "$here/weak-modules-check.sh" "$symvers" "${modules[@]}")

names=(agent agent-no-image depmod weak-modules)
labels=("agent kabi check" "agent kabi check, no kernel image" "depmod -n -e -E" "weak-modules (modprobe + join)")
table=$(python3 - "$tmp/hyperfine.json" "${names[*]}" "${labels[@]}" "$rss_agent" "$rss_bare" "$rss_depmod" "$rss_weak" <<'EOF'
import json, sys
names = sys.argv[2].split()
labels = sys.argv[3:3 + len(names)]
rss = dict(zip(names, map(float, sys.argv[3 + len(names):])))
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = res["depmod"]["median"]
print("| tool | median ms | ratio vs depmod | peak RSS MB |")
print("|---|---:|---:|---:|")
for name, label in zip(names, labels):
    med = res[name]["median"]
    print(f"| {label} | {med * 1e3:.1f} | {med / base:.2f}x | {rss[name] / 1024:.1f} |")
EOF
)
ratio() { python3 -c 'import json,sys; r={x["command"]:x for x in json.load(open(sys.argv[1]))["results"]}; print(r[sys.argv[2]]["median"] / r["depmod"]["median"])' "$tmp/hyperfine.json" "$1"; }
goal() {  # RATIO RSS_KB
  awk -v r="$1" -v k="$2" 'BEGIN { printf "time %s (%.2fx depmod, goal <= 0.50x), RSS %s (%.1f MB, goal <= 32 MB)",
    (r <= 0.5) ? "met" : "MISSED", r, (k <= 32 * 1024) ? "met" : "MISSED", k / 1024 }'
}
goal_agent=$(goal "$(ratio agent)" "$rss_agent")
goal_bare=$(goal "$(ratio agent-no-image)" "$rss_bare")

cpu=$(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo)
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
{
  echo "# Benchmark: \`agent kabi check\` vs depmod vs weak-modules"
  echo
  echo "Workload: $top and its ${#deps[@]} in-tree dependencies (${#modules[@]} modules, $((bytes / 1024)) KiB) from"
  echo "Debian $from, checked against $to's Module.symvers (a mismatch case):"
  echo "agent: $agent_verdict; without the image: $bare_verdict;"
  echo "depmod: $depmod_verdict; weak-modules: $weak_verdict."
  echo
  echo "$table"
  echo
  echo "Goal (at most 0.5x depmod's wall time, peak RSS at most 32 MB):"
  echo "- agent kabi check: $goal_agent"
  echo "- without a kernel image: $goal_bare"
  echo
  echo "Medians of $runs runs after $warmup warm-up runs (hyperfine $(hyperfine --version | awk '{print $2}'), page cache warm);"
  echo "peak RSS is the median of $rss_runs runs of \`/usr/bin/time -f %M\` (weak-modules: its largest process)."
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($cpu), $($depmod --version | head -n 1), agent $rev."
} >"$results"

echo
echo "$table"
echo
echo "goal: agent kabi check: $goal_agent"
echo "goal: without a kernel image: $goal_bare"
echo "bench: written to $results"
