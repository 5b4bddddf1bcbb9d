#!/bin/bash
# Benchmark: the agent's overhead around a node build. The same DKMS build of the test driver
# set (tests/fixtures/kmod-src) for the kernel of role k61, against a node tree holding its real
# Debian headers packages (tests/e2e/node-lib.sh), run two ways in the same session:
#   dkms    the reference: `dkms build -m agent-test-driver -v 1.0 -k KVER --kernelsourcedir ...
#           --dkmstree T --sourcetree S -j N`, in a private mount namespace a shell prepares as
#           the agent does (the headers, -common, linux-kbuild and the module tree bound
#           read-only at their canonical paths; mount points in tmpfs-backed overlays)
#   agent   `agent build --root NODE --sources S --cache FRESH --json`: the same dkms build plus
#           everything around it (sources hashed and copied, cache key, headers' mounts planned,
#           the result found, kABI-checked against the node's kernel and installed by rename)
#   hit     `agent build` again on the same cache: the cache hit (no build)
# Prints medians of BENCH_BUILD_RUNS alternating runs (default 5), the ratio agent/dkms, the
# agent's own overhead (its total minus its dkms run, from --json) and the cache hit's time, and
# appends a section to bench/results.md.
# Needs root (mount namespaces), dkms, the k61 kernel with --kbuild (tests/e2e/fetch-kernels.sh
# --kbuild k61). Environment: AGENT (default <repo>/build/agent/agent), AGENT_KERNEL_CACHE,
# BENCH_BUILD_RUNS, BENCH_RESULTS (default <repo>/bench/results.md; "-" for none).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
FIXTURES=$REPO/tests/fixtures
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
# shellcheck source=tests/e2e/node-lib.sh
. "$REPO/tests/e2e/node-lib.sh"
die() { echo "bench-build: $*" >&2; exit 1; }
agent=$(realpath "${AGENT:-$REPO/build/agent/agent}")
runs=${BENCH_BUILD_RUNS:-5}
results=${BENCH_RESULTS:-$REPO/bench/results.md}
[[ $(id -u) -eq 0 ]] || die "needs root (mount namespaces)"
command -v dkms >/dev/null || die "no dkms (tests/setup.sh)"
[[ -x $agent ]] || die "no agent at $agent"
bash "$REPO/tests/e2e/fetch-kernels.sh" --kbuild k61 >&2 || die "fetch-kernels.sh --kbuild k61 failed"
abi=$(bash "$REPO/tests/e2e/fetch-kernels.sh" --role k61) || die "no kernel for role k61"

work=$(mktemp -d /tmp/agent-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
node_with_headers "$work/node" "$abi" || die "node_with_headers $abi failed"
kver=$NODE_KVER
series=$(<"$CACHE/$abi/kbuild/.done")
dkms_src "$work/src"
jobs=$(nproc)

# The reference: dkms alone, in a namespace prepared by this shell.
reference() { # reference DIR: one dkms build with its trees under DIR
  local t=$1
  mkdir -p "$t/dkms" "$t/ov" "$t/tmp"
  unshare -m bash -euo pipefail -c '
    node=$1 kver=$2 abi=$3 series=$4 t=$5 src=$6 jobs=$7
    mount --make-rprivate /
    mount -t tmpfs tmpfs "$t/ov"
    for d in /usr/src /usr/lib; do   # writable overlays for the mount points only
      n=${d//\//_}
      mkdir -p "$t/ov/u$n" "$t/ov/w$n"
      mount -t overlay overlay -o "lowerdir=$d,upperdir=$t/ov/u$n,workdir=$t/ov/w$n" "$d"
    done
    bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
    bind "$node/usr/src/linux-headers-$kver" "/usr/src/linux-headers-$kver"
    bind "$node/usr/src/linux-headers-$abi-common" "/usr/src/linux-headers-$abi-common"
    bind "$node/usr/lib/linux-kbuild-$series" "/usr/lib/linux-kbuild-$series"
    bind "$node/lib/modules/$kver" "/lib/modules/$kver"
    TMPDIR=$t/tmp dkms build -m agent-test-driver -v 1.0 -k "$kver" --kernelsourcedir "/usr/src/linux-headers-$kver" \
      --dkmstree "$t/dkms" --sourcetree "$src" -j "$jobs" >"$t/dkms.log" 2>&1
  ' bench "$work/node" "$kver" "$abi" "$series" "$t" "$work/src" "$jobs" || die "the reference dkms build failed: $(tail -n 20 "$t/dkms.log")"
  find "$t/dkms" -name agent_test_nic.ko | grep -q . || die "the reference build made no agent_test_nic.ko"
}
secs() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

ref_t=() agent_t=() over_t=() hit_t=()
for i in $(seq 1 "$runs"); do
  t0=$(secs); reference "$work/ref$i"; t1=$(secs)
  ref_t+=("$(calc "$t1 - $t0")")
  mkdir -p "$work/tmp"
  t0=$(secs)
  TMPDIR=$work/tmp "$agent" build --root "$work/node" --sources "$work/src" --cache "/bench-cache-$i" --json \
    >"$work/a$i.json" 2>"$work/a$i.err" || die "agent build failed: $(cat "$work/a$i.json" "$work/a$i.err")"
  t1=$(secs)
  [[ $(field "$work/a$i.json" result) == built ]] || die "agent build did not build: $(cat "$work/a$i.json")"
  agent_t+=("$(calc "$t1 - $t0")")
  over_t+=("$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % (d["total_seconds"] - d["build_seconds"]))' "$work/a$i.json")")
  t0=$(secs)
  TMPDIR=$work/tmp "$agent" build --root "$work/node" --sources "$work/src" --cache "/bench-cache-$i" --json \
    >"$work/h$i.json" 2>/dev/null || die "the cache hit failed"
  t1=$(secs)
  [[ $(field "$work/h$i.json" result) == cached ]] || die "no cache hit: $(cat "$work/h$i.json")"
  hit_t+=("$(calc "$t1 - $t0")")
  rm -rf "$work/ref$i"
done
ref=$(printf '%s\n' "${ref_t[@]}" | median)
ag=$(printf '%s\n' "${agent_t[@]}" | median)
over=$(printf '%s\n' "${over_t[@]}" | median)
hit=$(printf '%s\n' "${hit_t[@]}" | median)
ratio=$(calc "$ag / $ref")
table=$(printf '| run | median s | ratio vs dkms |\n|---|---:|---:|\n| dkms build (reference) | %.2f | 1.00x |\n| agent build (built) | %.2f | %.2fx |\n| agent build (cache hit) | %.3f | %.3fx |\n' \
  "$ref" "$ag" "$ratio" "$hit" "$(calc "$hit / $ref")")
summary="The agent's own time around the build (its total minus its dkms run, median): ${over} s."
echo "$table"
echo "$summary"
if [[ $results != - ]]; then
  {
    echo
    echo "## The node build: agent build vs dkms build ($(date -u +%F))"
    echo
    echo "The test driver set (2 modules) for $kver against its real Debian headers packages, -j$jobs,"
    echo "$runs alternating runs each; wall clock."
    echo
    echo "$table"
    echo
    echo "$summary"
  } >>"$results"
fi
