#!/usr/bin/env bash
# Sets everything up and passes every test: unit tests, the kABI engine on real Debian
# kernels, the kernel-agreement suite under qemu, a brief fuzz run of each parser, the mutation
# run (tests/mutation: each listed mistake must fail a test), and the Release builds a packager
# makes (gcc and clang, warnings as errors).
# Kernel packages are cached in ${AGENT_KERNEL_CACHE:-~/.cache/intel-gpu-agent/kernels}.
# A skipped test (e.g. a missing kernel in the cache) fails the run: "every test" means every.
# Environment: AGENT_WERROR=ON  warnings are errors in the main build too (CI sets it).
# The last line is "N passed, M failed" (tests; a skipped test counts as failed).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
# Through ccache: the mutation run's scratch copy (tests/mutation/run.sh) then compiles every
# file it shares with this tree from the cache instead of again.
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=true
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENT_WERROR="${AGENT_WERROR:-OFF}" \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build -j"$(nproc)"
bash tests/e2e/fetch-kernels.sh
# The headers' -common half and the kbuild tools, for the tests that build modules against the
# real headers (lifecycle_vm's test driver set, build_node's DKMS build), and k61's headers
# .debs that build_vm installs in its root filesystem.
bash tests/e2e/fetch-kernels.sh --kbuild k61 k61_same k61_old
# build_vm's root filesystem (mmdebstrap, cached under the kernel cache; made here, outside the
# test's timeout, the first time).
bash tests/e2e/build-rootfs.sh k61 build/agent/agent >/dev/null
# systemd_vm's root filesystem (a Debian 12 with systemd as PID 1; mmdebstrap, cached likewise).
bash tests/e2e/systemd-rootfs.sh build/agent/agent >/dev/null

# ctest exits 0 when tests were skipped (SKIP_RETURN_CODE); its JUnit report says which.
junit=$PWD/build/run-all-junit.xml
rm -f "$junit"
rc=0
# -j: two one-CPU tests (the single-vCPU VMs, the unit tests) side by side; a test that uses every
# CPU says so (PROCESSORS) and runs alone.
ctest --test-dir build -j"$(nproc)" --output-on-failure --timeout 1800 --output-junit "$junit" || rc=$?
if [[ ! -s $junit ]]; then
  echo "run-all: ctest wrote no report ($junit)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
# One line per test: "<passed|failed|skipped> <name> [<tab>why it skipped]".
results=$(python3 - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        state = "failed"
    elif case.find("skipped") is not None or case.get("status") in ("notrun", "disabled"):
        state = "skipped"
    else:
        state = "passed"
    # A skipped test's reason: the last line it printed (ctest shows no output of skipped tests).
    out = (case.findtext("system-out") or "").strip().splitlines()
    print(state, case.get("name"), "\t" + out[-1] if state == "skipped" and out else "")
PY
)
passed=$(grep -c '^passed ' <<<"$results" || true)
failed=$(grep -c '^failed ' <<<"$results" || true)
mapfile -t skipped < <(sed -n 's/^skipped \([^ \t]*\).*/\1/p' <<<"$results")
if ((${#skipped[@]})); then
  echo "run-all: ${#skipped[@]} test(s) skipped, which fails the run: ${skipped[*]}" >&2
  sed -n 's/^skipped \([^ \t]*\) *\t\(.*\)/run-all:   \1: \2/p' <<<"$results" >&2
fi
if ((rc == 0 && failed > 0)); then rc=1; fi
if ((rc == 0 && ${#skipped[@]} > 0)); then rc=1; fi
echo "$passed passed, $((failed + ${#skipped[@]})) failed"
exit "$rc"
