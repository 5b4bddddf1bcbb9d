#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, one per parser of untrusted input) in a
# build directory of their own and runs each for a bounded time: first every saved reproducer
# in tests/fuzz/regressions/<target>/, then fuzzing from a fresh seed corpus (make-seeds.py)
# plus the corpus earlier runs grew. Exits non-zero when any target crashed, leaked, timed out
# or ran out of memory; the last line is "N passed, M failed" (targets).
#
# Environment:
#   FUZZ_SECONDS     fuzzing time per target (default 20)
#   FUZZ_TARGETS     subset, e.g. "symvers module"
#                    (default: symvers module decompress signature kernel_image stablelist)
#   FUZZ_BUILD_DIR   build directory (default: <repo>/build-fuzz)
#   FUZZ_JOBS        ninja -j (default 2)
#   FUZZ_PHASE       build (configure, build, seeds: both CPUs), run (the targets one at a time:
#                    one CPU, so ctest runs a one-CPU VM test beside it), or all (default)
#   AGENT_KERNEL_CACHE  real kernels for seeds (default ~/.cache/intel-gpu-agent/kernels)
# A crash leaves its input in $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/; once understood, copy it
# to tests/fuzz/regressions/<target>/ so it is replayed on every run.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
secs=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-2}
phase=${FUZZ_PHASE:-all}
read -r -a targets <<<"${FUZZ_TARGETS:-symvers module decompress signature kernel_image stablelist host_text state_json}"

die() { echo "run-fuzz: $*" >&2; echo "0 passed, ${#targets[@]} failed"; exit 1; }

for cc in clang clang++; do
  command -v "$cc" >/dev/null || die "$cc not found (apt-get install clang libclang-rt-14-dev)"
done
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || die "FUZZ_SECONDS must be a positive integer, not '$secs'"
[[ $phase == all || $phase == build || $phase == run ]] || die "FUZZ_PHASE must be build, run or all, not '$phase'"

if [[ $phase != run ]]; then

echo "run-fuzz: configuring $build"
# A build dir generated from another checkout can't be reused: start it afresh.
if [[ -f $build/CMakeCache.txt ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
mkdir -p "$build"
CC=clang CXX=clang++ cmake -G Ninja -S "$root" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENT_FUZZ=ON -DAGENT_SANITIZE=ON -DBUILD_TESTING=OFF \
  -DAGENT_WERROR="${AGENT_WERROR:-OFF}" >"$build/fuzz-configure.log" 2>&1 \
  || { tail -n 30 "$build/fuzz-configure.log" >&2; die "cmake configure failed (log: $build/fuzz-configure.log)"; }
# Into a variable, not `| grep -q`: grep -q quits at the first match, ninja then writes into a
# closed pipe, and pipefail turns that into "no targets" now and then.
targets_list=$(ninja -C "$build" -t targets all 2>/dev/null) || targets_list=
if ! grep -q '^fuzz_symvers:' <<<"$targets_list"; then
  die "no fuzz targets: the top-level CMakeLists.txt must have 'if(AGENT_FUZZ) add_subdirectory(tests/fuzz) endif()'"
fi
echo "run-fuzz: building ${targets[*]/#/fuzz_}"
ninja -C "$build" -j "$jobs" "${targets[@]/#/fuzz_}" >"$build/fuzz-build.log" 2>&1 \
  || { tail -n 40 "$build/fuzz-build.log" >&2; die "build failed (log: $build/fuzz-build.log)"; }

python3 "$here/make-seeds.py" "$build/fuzz-seeds" || die "seed generation failed"
if [[ $phase == build ]]; then
  echo "run-fuzz: built ${#targets[@]} targets and their seeds in $build"
  exit 0
fi
fi  # phase != run

for t in "${targets[@]}"; do
  [[ -x $build/tests/fuzz/fuzz_$t && -d $build/fuzz-seeds/$t ]] \
    || die "fuzz_$t is not built in $build (FUZZ_PHASE=build first)"
done
export AGENT_FUZZ_CERTS=$build/fuzz-seeds/certs  # what fuzz_signature verifies against

# halt_on_error etc.: the first report is fatal; leaks count as failures (LeakSanitizer).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The gist of a sanitizer/libFuzzer report: what, where (frames outside the runtimes), which input.
report() {
  grep -E 'Running: |ERROR: |SUMMARY: |runtime error: ' "$1" | head -n 6 | sed 's/^/    /'
  grep -E '^ +#[0-9]+ ' "$1" | grep -vE 'fuzzer::|__sanitizer|__asan|__ubsan|compiler-rt|libc\.so|/nptl/|/stdlib/|/signal/|/csu/|in _start |in main ' \
    | sed -E 's/ \(BuildId: [0-9a-f]+\)//; s/^ +#[0-9]+ 0x[0-9a-f]+ /      /' | awk '!seen[$0]++' | cut -c1-220 | head -n 6
}

passed=0 failed=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  corpus=$build/fuzz-corpus/$t
  artifacts=$build/fuzz-artifacts/$t
  log=$build/fuzz-$t.log
  mkdir -p "$corpus" "$artifacts"
  ok=1

  shopt -s nullglob
  reproducers=("$here/regressions/$t"/*)
  shopt -u nullglob
  if ((${#reproducers[@]})); then
    if ! "$bin" -timeout=10 -rss_limit_mb=2048 "${reproducers[@]}" >"$build/fuzz-$t-regressions.log" 2>&1; then
      ok=0
      echo "fuzz_$t: regressions FAILED: a saved reproducer still fails (log: $build/fuzz-$t-regressions.log)"
      report "$build/fuzz-$t-regressions.log"
    fi
  fi

  dict=()
  [[ -f $here/dicts/$t.dict ]] && dict=(-dict="$here/dicts/$t.dict")
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" "$build/fuzz-seeds/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  units=$(find "$corpus" -type f | wc -l)
  if ((rc != 0)); then
    ok=0
    artifact=$(grep -oE "(Test unit written to|artifact_prefix.*; Test unit written to) [^ ]+" "$log" | tail -n 1 | awk '{print $NF}')
    echo "fuzz_$t: fuzzing FAILED (exit $rc) after ${runs:-?} runs; input: ${artifact:-none saved}; log: $log"
    report "$log"
  else
    echo "fuzz_$t: fuzzing ok, ${runs:-?} runs in ${secs}s, coverage ${cov:-?} edges, corpus $units inputs"
  fi
  if ((ok)); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

echo "$passed passed, $failed failed"
((failed == 0))
