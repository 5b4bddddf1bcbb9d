#!/bin/bash
# Benchmark: `agent kabi matrix` - one bundle over 20 kernels in one run - beside what a release
# pipeline runs today, `depmod -n -e -E` once per kernel (each kernel's Module.symvers against the
# bundle's modules in a base dir of their own).
#   bundle   TOP (default i915) and its in-tree dependencies from modules.dep (a driver bundle,
#            11 modules for i915) of ABI BENCH_FROM (default: the kernel role k61_same)
#   kernels  20 directories, each holding a real kernel's Module.symvers and module tree (links
#            into the cache), the fetched role kernels in turn (k61, k61_same, k61_old, k612,
#            k612_old: 4 each): the same files several times, as 20 z-stream kernels of a few
#            series would be; the page cache is warm either way.
# Wall time: hyperfine medians; peak RSS: /usr/bin/time %M, median of BENCH_RSS_RUNS runs. Prints a
# markdown table and appends it to bench/results.md.
#
# Needs the kernels fetched by tests/e2e/fetch-kernels.sh, hyperfine, GNU time, kmod.
# Environment: AGENT_KERNEL_CACHE, BENCH_FROM, BENCH_MODULE, BENCH_KERNELS (default 20),
# BENCH_RUNS (default 20), BENCH_WARMUP (3), BENCH_RSS_RUNS (5), AGENT, BENCH_RESULTS (as bench/run.sh).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${AGENT_KERNEL_CACHE:-$HOME/.cache/intel-gpu-agent/kernels}
die() { echo "bench: $*" >&2; exit 1; }
role() { bash "$root/tests/e2e/fetch-kernels.sh" --role "$1" || die "no kernel for role $1"; }
from=${BENCH_FROM:-$(role k61_same)}
top=${BENCH_MODULE:-i915}
nkernels=${BENCH_KERNELS:-20}
runs=${BENCH_RUNS:-20}
warmup=${BENCH_WARMUP:-3}
rss_runs=${BENCH_RSS_RUNS:-5}
agent=${AGENT:-$root/build/agent/agent}
results=${BENCH_RESULTS:-$here/results.md}
depmod=$(command -v depmod || echo /sbin/depmod)

for tool in hyperfine python3; do command -v "$tool" >/dev/null || die "$tool not found (tests/setup.sh)"; done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
[[ -x $depmod ]] || die "depmod not found (apt-get install kmod)"
if [[ -z ${AGENT:-} && -f $root/build/build.ninja ]]; then
  ninja -C "$root/build" agent >/dev/null || die "ninja -C $root/build agent failed"
fi
[[ -x $agent ]] || die "no agent binary at $agent"

abis=()
for r in k61 k61_same k61_old k612 k612_old; do
  abi=$(role "$r")
  [[ -f $cache/$abi/Module.symvers && -d $cache/$abi/modules ]] || die "kernel $abi not in $cache (run tests/e2e/fetch-kernels.sh)"
  abis+=("$abi")
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
from_tree=$(cd "$cache/$from/modules" && pwd -P)
line=$(grep -m1 -E "^([^:]*/)?$top\.ko(\.[a-z]+)?:" "$from_tree/modules.dep") || die "$top not in $from_tree/modules.dep"
rel_paths=("${line%%:*}")
read -r -a deps <<<"${line#*:}"
rel_paths+=("${deps[@]}")
mkdir -p "$tmp/bundle"
for rel in "${rel_paths[@]}"; do cp "$from_tree/$rel" "$tmp/bundle/"; done

# The kernels, and for depmod a base dir per kernel holding the bundle under lib/modules/<kver>.
kernels=()
: >"$tmp/depmod-all.sh"
for ((i = 0; i < nkernels; i++)); do
  abi=${abis[i % ${#abis[@]}]}
  k=$tmp/kernels/$((i + 1))-$abi
  mkdir -p "$k"
  ln -s "$cache/$abi/Module.symvers" "$k/Module.symvers"
  ln -s "$(cd "$cache/$abi/modules" && pwd -P)" "$k/modules"
  kernels+=("$k")
  kver=$(basename "$(cd "$cache/$abi/modules" && pwd -P)")
  base=$tmp/depmod/$((i + 1))
  mkdir -p "$base/lib/modules/$kver"
  cp -l "$tmp"/bundle/*.ko* "$base/lib/modules/$kver/" 2>/dev/null || cp "$tmp"/bundle/*.ko* "$base/lib/modules/$kver/"
  printf '%q -n -e -E %q -b %q %q >/dev/null 2>&1 || true\n' "$depmod" "$cache/$abi/Module.symvers" "$base" "$kver" >>"$tmp/depmod-all.sh"
done
nmod=$(find "$tmp/bundle" -name '*.ko*' | wc -l)

"$agent" kabi matrix --json --bundle "$tmp/bundle" "${kernels[@]}" >"$tmp/matrix.json" || [[ $? -le 1 ]] || die "agent kabi matrix failed"
verdicts=$(python3 -c '
import json, sys, collections
j = json.load(open(sys.argv[1]))
c = collections.Counter(k["verdict"] for k in j["kernels"])
print("%d kernels: %s; %d groups; %d imports" % (len(j["kernels"]), ", ".join("%d %s" % (n, v) for v, n in sorted(c.items())),
      len(j["groups"]), j["imports"]))' "$tmp/matrix.json")
bash "$tmp/depmod-all.sh"
depmod_warnings=$(bash -c "$(sed 's/ >\/dev\/null 2>&1 || true/ 2>\&1 >\/dev\/null || true/' "$tmp/depmod-all.sh")" | grep -c 'disagrees about version' || true)
echo "bench: $nmod modules of $from's $top bundle over $nkernels kernels: $verdicts"
echo "bench: depmod: $depmod_warnings 'disagrees about version' warnings over the $nkernels runs"

q() { printf '%q ' "$@"; }
hyperfine -N --style basic --warmup "$warmup" --runs "$runs" --export-json "$tmp/hyperfine.json" \
  -n matrix "$(q "$agent" kabi matrix --bundle "$tmp/bundle" "${kernels[@]}") " \
  -n matrix-json "$(q "$agent" kabi matrix --json --bundle "$tmp/bundle" "${kernels[@]}")" \
  -n depmod-x"$nkernels" "$(q bash "$tmp/depmod-all.sh")" -i >&2

rss_median() {
  local samples=()
  for ((i = 0; i < rss_runs; i++)); do
    /usr/bin/time -o "$tmp/rss" -f '%M' "$@" >/dev/null 2>&1 || true
    samples+=("$(tail -n 1 "$tmp/rss")")
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rss_matrix=$(rss_median "$agent" kabi matrix --json --bundle "$tmp/bundle" "${kernels[@]}")
# depmod's largest single process: one kernel's run.
rss_depmod=$(rss_median bash -c "$(head -n 1 "$tmp/depmod-all.sh")")

table=$(python3 - "$tmp/hyperfine.json" "$nkernels" "$rss_matrix" "$rss_depmod" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[2])
rss = {"matrix": float(sys.argv[3]), "matrix-json": float(sys.argv[3]), f"depmod-x{n}": float(sys.argv[4])}
base = res[f"depmod-x{n}"]["median"]
print(f"| tool ({n} kernels) | median ms | ms per kernel | ratio vs depmod | peak RSS MB |")
print("|---|---:|---:|---:|---:|")
for name, label in (("matrix", "agent kabi matrix"), ("matrix-json", "agent kabi matrix --json"),
                    (f"depmod-x{n}", f"depmod -n -e -E, once per kernel")):
    med = res[name]["median"]
    print(f"| {label} | {med * 1e3:.1f} | {med * 1e3 / n:.2f} | {med / base:.2f}x | {rss[name] / 1024:.1f} |")
PY
)
cpu=$(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo)
rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
{
  echo
  echo "# Benchmark: \`agent kabi matrix\` over $nkernels kernels vs depmod once per kernel"
  echo
  echo "Workload: $top and its ${#deps[@]} in-tree dependencies ($nmod modules) from Debian $from, over $nkernels"
  echo "kernel directories (Module.symvers + module tree), the role kernels ${abis[*]} in turn."
  echo "agent: $verdicts; depmod: $depmod_warnings 'disagrees about version' warnings in all."
  echo
  echo "$table"
  echo
  echo "Medians of $runs runs after $warmup warm-up runs (hyperfine $(hyperfine --version | awk '{print $2}'), page cache warm);"
  echo "peak RSS: median of $rss_runs runs of \`/usr/bin/time -f %M\` (depmod: one kernel's process)."
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($cpu), $($depmod --version | head -n 1), agent $rev."
} >>"$results"
echo
echo "$table"
echo "bench: appended to $results"
