#!/usr/bin/env bash
# The main job on the embedded default: the prebuilt i915 of Debian 6.1.0-55 (compatible
# kABI) and of 6.1.0-47 (changed kABI) against the running kernel 6.1.0-56 (the kernel roles
# k61_same, k61_old and k61 of tests/e2e/fetch-kernels.sh: other ABIs once the archive drops
# these). The agent predicts; then the real kernel, booted under qemu, inserts the same
# modules and answers.
# Then `agent --check` runs inside that real kernel on its live /sys and /proc, with a bundle
# whose module drives the VM's Intel NIC, and the kernel inserts it and binds the device.
# Last, the product itself: the agent as the entrypoint (`agent run`) in one boot of that kernel,
# with the test driver set (tests/fixtures/kmod-src, built against the real Debian headers):
# first load to ready, restart fast path, rmmod while ready, unload, changed kABI, a failing
# init rolled back, a foreign module in use, with the start-to-ready times.
set -euo pipefail
cd "$(dirname "$0")/.."

# The tools' own output (apt, cmake, the archive's downloads) goes to a log; the screen shows
# each step and then the results.
setup_log=${TMPDIR:-/tmp}/agent-demo-setup.log
: >"$setup_log"
step() { # step WHAT COMMAND...: runs COMMAND with its output in the log; on failure shows its end
  local what=$1
  shift
  echo "demo: $what"
  "$@" >>"$setup_log" 2>&1 || { echo "demo: failed: $what; the end of $setup_log:" >&2; tail -n 30 "$setup_log" >&2; exit 1; }
}
echo "demo: setting up (the tools' output: $setup_log)"
step "installing the build and test dependencies (Debian packages)" bash tests/setup.sh
step "configuring the build" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "building the agent" cmake --build build -j"$(nproc)" --target agent
step "fetching three Debian 6.1 kernels by role (k61, k61_same, k61_old; cached)" \
  bash tests/e2e/fetch-kernels.sh k61 k61_same k61_old
step "fetching their headers' build tools (cached)" bash tests/e2e/fetch-kernels.sh --kbuild k61 k61_same k61_old

CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
AGENT=build/agent/agent
target=$(bash tests/e2e/fetch-kernels.sh --role k61)
same=$(bash tests/e2e/fetch-kernels.sh --role k61_same)
old=$(bash tests/e2e/fetch-kernels.sh --role k61_old)
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

: >"$work/manifest"
# The running kernel's image: its built-in certificates verify the modules' signatures.
image=()
for f in "$CACHE/$target"/root/boot/vmlinuz-*; do [[ -f $f ]] && image=(--kernel-image "$f"); done
for from in "$same" "$old"; do
  ko="$CACHE/$from/modules/kernel/drivers/gpu/drm/i915/i915.ko"
  echo
  echo "=== agent kabi check: i915 built for $from, running kernel $target ==="
  "$AGENT" kabi check --symvers "$CACHE/$target/Module.symvers" "${image[@]}" \
    --kernel-modules "$CACHE/$target/modules" "$ko" >"$work/$from.txt" || true
  # The verdict table and the first reasons, then the summary line.
  if (($(wc -l <"$work/$from.txt") > 14)); then head -n 12 "$work/$from.txt"; echo "  ..."; tail -n 1 "$work/$from.txt"
  else cat "$work/$from.txt"; fi
  "$AGENT" kabi check --json --symvers "$CACHE/$target/Module.symvers" "${image[@]}" \
    --kernel-modules "$CACHE/$target/modules" "$ko" >"$work/$from.json" || true
  echo "i915-from-$from $ko" >>"$work/manifest"
done

echo
echo "=== the real kernel $target under qemu inserts the same modules ==="
bash tests/e2e/run-vm.sh -o "$work/results" "$target" "$work/manifest"
printf '\n%-22s %-22s %s\n' "MODULE" "AGENT PREDICTED" "KERNEL ANSWERED"
agree=0 total=0
for from in "$same" "$old"; do
  predicted=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["modules"][0]; print(m["errno"])' "$work/$from.json")
  answered=$(awk -v c="i915-from-$from" '$1 == c { print $2 }' "$work/results")
  printf '%-22s %-22s %s\n' "i915 from $from" "errno $predicted" "errno ${answered:-none}"
  total=$((total + 1))
  [[ $predicted == "$answered" ]] && agree=$((agree + 1))
done
echo
echo "agent and kernel agree on $agree of $total modules"

echo
echo "=== agent --check on the real kernel $target under qemu: a bundle with $same's e1000 for the VM's Intel NIC, then the kernel inserts it ==="
vm_rc=0
bash tests/e2e/check-vm.sh -s -a "$AGENT" "$target" || vm_rc=$?

echo
echo "=== the entrypoint (agent) on the real kernel $target under qemu: the test driver set for the VM's Intel NIC, bundle built for $same ==="
run_rc=0
bash tests/e2e/lifecycle-vm.sh -a "$AGENT" "$target" || run_rc=$?
[[ $agree -eq $total && $vm_rc -eq 0 && $run_rc -eq 0 ]]
