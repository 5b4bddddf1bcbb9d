#!/usr/bin/env bash
# A packager's build: configures Release with one compiler (gcc or clang) and warnings as errors
# in a build directory of its own and builds the agent, so a warning that would break a
# packager's -Werror build (or a distribution's newer compiler) fails the suite.
# Usage: release-build.sh gcc|clang BUILD_DIR   (exit 77 when the compiler is missing)
# The build directory is kept: later runs rebuild only what changed.
# Environment: RELEASE_BUILD_JOBS  ninja -j (default 2)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
compiler=${1:?usage: release-build.sh gcc|clang BUILD_DIR}
build=${2:?usage: release-build.sh gcc|clang BUILD_DIR}
jobs=${RELEASE_BUILD_JOBS:-2}

case $compiler in
  gcc) cc=gcc cxx=g++ ;;
  clang) cc=clang cxx=clang++ ;;
  *) echo "release-build: unknown compiler '$compiler' (gcc or clang)" >&2; exit 2 ;;
esac
for c in "$cc" "$cxx"; do
  command -v "$c" >/dev/null || { echo "release-build: $c not found; skipping" >&2; exit 77; }
done

# A build dir generated from another checkout or with another compiler can't be reused.
if [[ -f $build/CMakeCache.txt ]] &&
   ! { grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$build/CMakeCache.txt" &&
       grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=.*/$cxx\$" "$build/CMakeCache.txt"; }; then
  rm -rf "$build"
fi
mkdir -p "$build"
start=$SECONDS
CC=$cc CXX=$cxx cmake -G Ninja -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DAGENT_WERROR=ON -DBUILD_TESTING=OFF >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; echo "release-build: $compiler: configure failed" >&2; exit 1; }
# Only the agent: the libraries and the binary a package ships (the tests build in the main tree).
cmake --build "$build" --target agent -j "$jobs" >"$build/build.log" 2>&1 \
  || { grep -E -A5 'error|warning' "$build/build.log" | head -n 60 >&2
       echo "release-build: $compiler: Release build failed (log: $build/build.log)" >&2; exit 1; }
echo "release-build: $compiler: Release build of agent without warnings ($((SECONDS - start)) s)"
