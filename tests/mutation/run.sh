#!/usr/bin/env bash
# The mutation run: each mistake of tests/mutation/mutations.txt is put into a scratch copy of
# the sources, which is built and given to the unit and real-data tests (ctest -L
# 'unit|realdata', stopping at the first failure); a mistake no test fails on SURVIVES, and the
# run fails. The scratch copy lives in BUILD_DIR/mutation/src, its build in the copy's own
# `build/` (configured once, built incrementally: each mistake recompiles its file, and again
# once it is undone). The work tree is never touched.
#
# The copy is built as BUILD_DIR was (its build type and AGENT_WERROR, read from its
# CMakeCache.txt) and, when ccache is there, through ccache with the repository as its base
# directory: every file the copy shares with the work tree then compiles to a cache hit of the
# main build's own compile (the same command line relative to the build directory, hence the
# copy's build/ at the same place as the work tree's).
#
# Before the mutations, the same tests on the unmutated copy must pass with none skipped (a
# test that cannot run catches nothing). Left out: build_node (a real DKMS build, minutes; the
# build.cpp mutation is caught by the unit test test_build_enforced).
#
# A mutation's `first` test (a command line) runs first, to save time; only when it passes do
# all run.
#
# Usage: run.sh [-b BUILD_DIR] [-l LIST] [NAME...]
#   BUILD_DIR  default build/ of this repository (the scratch copy goes to BUILD_DIR/mutation)
#   LIST       default tests/mutation/mutations.txt
#   NAME       only these mutations (default: all)
# Output: "KILLED|SURVIVED NAME by TEST (N s)" per mutation, then "N killed, M survived".
# Exit: 0 every mutation killed, 1 one survived, 2 an error (the list, a build, the baseline).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
build_dir=$REPO/build
list=$HERE/mutations.txt
while getopts "b:l:" opt; do
  case $opt in
    b) build_dir=$OPTARG ;;
    l) list=$OPTARG ;;
    *) echo "usage: run.sh [-b BUILD_DIR] [-l LIST] [NAME...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

die() { echo "mutation: ERROR: $*" >&2; exit 2; }
mutate() { python3 "$HERE/mutate.py" "$@"; }

scratch=$build_dir/mutation
src=$scratch/src
bld=$src/build # where the work tree's build is: the same relative paths, the same ccache keys
mkdir -p "$src"
start=$SECONDS

# Every mutation's text must be found exactly once in the sources as they are now.
mutate check "$list" "$REPO" >"$scratch/list" || die "the list $list does not fit the sources"
mapfile -t names < <(cut -f1 "$scratch/list")
if (($# > 0)); then
  for n in "$@"; do grep -qx "$n" <<<"$(printf '%s\n' "${names[@]}")" || die "no mutation $n in $list"; done
  names=("$@")
fi

mutate sync "$REPO" "$src" || die "cannot copy the sources to $src"
# Undo whatever an interrupted run left applied: the copy is the work tree's again.
trap 'mutate sync "$REPO" "$src" >/dev/null 2>&1 || true' EXIT

cached() { # VAR: its value in BUILD_DIR's CMakeCache.txt
  sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt"
}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # Paths relative to the build directory, and not the directory itself in the hash (-g).
  export CCACHE_BASEDIR=$REPO CCACHE_NOHASHDIR=true
fi
if [[ ! -f $bld/CMakeCache.txt ]]; then
  [[ -f $build_dir/CMakeCache.txt ]] || die "$build_dir is not a configured build directory"
  # The main build's flags (a cache hit needs the same command line); shared libraries (no
  # static archives to link into each test); the tests' fixtures those of the work tree and
  # BUILD_DIR (data, never mutated: the test objects compile to the same command lines). Under
  # AGENT_WERROR=ON a mistake that only warns fails the copy's build: an error of the list
  # (mend the mistake so that it compiles).
  linker=()
  command -v ld.lld >/dev/null && linker=(-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld)
  cmake -S "$src" -B "$bld" -G Ninja -DCMAKE_BUILD_TYPE="$(cached CMAKE_BUILD_TYPE)" \
    -DAGENT_WERROR="$(cached AGENT_WERROR)" -DAGENT_STATIC_LIBS=OFF "${launcher[@]}" "${linker[@]}" \
    -DAGENT_TEST_SOURCE_DIR="$REPO" -DAGENT_TEST_BINARY_DIR="$build_dir" \
    >"$scratch/configure.log" 2>&1 \
    || { tail -20 "$scratch/configure.log" >&2; die "cmake failed (log: $scratch/configure.log)"; }
fi

build() { # LABEL: the scratch build, incremental
  cmake --build "$bld" -j"$(nproc)" >"$scratch/build.log" 2>&1 \
    || { grep -m5 -E 'error|Error' "$scratch/build.log" >&2; die "$1: the build failed (log: $scratch/build.log)"; }
}
tests() { # -> ctest's exit status; its output in $scratch/ctest.log
  local rc=0
  ctest --test-dir "$bld" -L 'unit|realdata' -E '^build_node$' --stop-on-failure --timeout 600 \
    -j"$(nproc)" >"$scratch/ctest.log" 2>&1 || rc=$?
  return "$rc"
}
first() { # NAME: its first test (the list's command line, in the build directory) -> its exit status
  local cmd
  cmd=$(mutate first "$list" "$1")
  [[ -n $cmd ]] || return 0
  (cd "$bld" && eval "timeout 600 $cmd") >"$scratch/first.log" 2>&1
}

t0=$SECONDS
build "the unmutated copy"
echo "mutation: built the scratch copy in $((SECONDS - t0)) s" >&2
t0=$SECONDS
tests || { grep -E 'Failed|Not Run|Skipped' "$scratch/ctest.log" >&2 || true
           die "the tests fail on the unmutated copy (log: $scratch/ctest.log)"; }
if grep -qE '\*\*\*Skipped|Not Run|Disabled' "$scratch/ctest.log"; then
  grep -E '\*\*\*Skipped|Not Run|Disabled' "$scratch/ctest.log" >&2
  die "tests skipped on the unmutated copy: they could catch nothing (log: $scratch/ctest.log)"
fi
ran=$(grep -oE 'tests passed, [0-9]+ tests failed out of [0-9]+' "$scratch/ctest.log" | grep -oE '[0-9]+$' || echo 0)
((ran > 0)) || die "no test ran (log: $scratch/ctest.log)"
echo "mutation: $ran tests pass on the unmutated copy ($((SECONDS - t0)) s)" >&2

# Each mutation's first test must pass on the unmutated copy (and find tests: -w NoTests).
for name in "${names[@]}"; do
  first "$name" || { cat "$scratch/first.log" >&2; die "mutation $name: its first test fails on the unmutated copy"; }
done

killed=0 survived=0
for name in "${names[@]}"; do
  file=$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' "$scratch/list")
  t0=$SECONDS
  mutate apply "$list" "$name" "$src" || die "cannot apply $name"
  build "$name"
  # Its first test (quick when it catches it), then all of them.
  if first "$name"; then by=""; else by="its first test"; fi
  if [[ -z $by ]] && tests; then
    echo "SURVIVED $name ($file: $(mutate rule "$list" "$name")) ($((SECONDS - t0)) s)"
    survived=$((survived + 1))
  else
    if [[ -z $by ]]; then
      by=$(grep -m1 -oE 'Test +#[0-9]+: [^ ]+ [.]*\*+(Failed|Timeout|Exception)' "$scratch/ctest.log" \
        | sed -E 's/.*: ([^ ]+) .*/\1/' || true)
    fi
    echo "KILLED $name by ${by:-a failing test} ($((SECONDS - t0)) s)"
    killed=$((killed + 1))
  fi
  cp "$REPO/$file" "$src/$file" # undone (a new mtime: rebuilt with the next build)
done
echo "$killed killed, $survived survived ($((SECONDS - start)) s)"
((survived == 0)) || exit 1
