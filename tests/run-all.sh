#!/usr/bin/env bash
# Sets everything up and passes every test: unit tests, the kABI engine on real Debian
# kernels, the kernel-agreement suite under qemu, and a brief fuzz run of each parser.
# Kernel packages are cached in ${AGENT_KERNEL_CACHE:-~/.cache/intel-gpu-agent/kernels}.
# Environment: AGENT_WERROR=ON  warnings are errors in the main build too (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAGENT_WERROR="${AGENT_WERROR:-OFF}" >/dev/null
cmake --build build -j"$(nproc)"
bash tests/e2e/fetch-kernels.sh
ctest --test-dir build --output-on-failure --timeout 1800
