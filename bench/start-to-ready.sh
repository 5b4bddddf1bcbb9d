#!/usr/bin/env bash
# Benchmark: the entrypoint's start to ready beside the kernel's own time, in ONE boot of a real
# Debian kernel under qemu (TCG), on a busybox initramfs that is a small real host (vm_host_root,
# as lifecycle-vm.sh: the agent and its libraries, pci.ids, the kernel's module tree with e1000
# and its indexes made again by depmod for the files present, the headers, the kernel image).
# Two bundles, in turn:
#   test    the test driver set (tests/fixtures/kmod-src: agent_test_helper, agent_test_nic)
#           built for -p's kABI, at /opt/lib/modules/<kver of -p>, its firmware at /opt/lib/firmware
#   e1000   Debian's own e1000.ko of -p's kernel, the bundle for qemu's Intel e1000 NIC
# and per bundle N alternating runs (tests/e2e/vm/bench-init.sh) of:
#   floor   insmod of the bundle's files in dependency order until the NIC is bound to the
#           driver (firmware_class.path at the bundle's firmware), then rmmod
#   first   `agent run --nfd-dir ... --bundle ...` (the entrypoint as lifecycle-init.sh starts
#           it) until its ready file exists; SIGTERM
#   fast    the same again with the modules live (the fast path) until ready; SIGTERM, `agent
#           unload`, so that the next first load is one again
# then one first load with the kernel image's certificates not kept from an earlier start (cold:
# the runs above keep them from the first on), `agent --check` of the bundle, and one first load and one fast path under -P's profiler:
# strace (file opens and module calls, timestamped: where the agent's wall time goes in the VM;
# the default), perf (cpu-clock samples by library and function) or none. Before the bundles:
# process start, `agent --version` ten times beside busybox's.
# Prints per-run seconds, medians, ratios vs the floor, the agent's status `timings` (medians)
# and the strace profile's largest gaps; appends a section to bench/results.md.
# Wall clock in the VM (/proc/uptime, 10 ms; polled every 10 ms). The ratios within the boot are
# the figures: absolute seconds under TCG depend on the machine's load.
#
# Usage: bench/start-to-ready.sh [-n N] [-P strace|perf|none] [-a AGENT] [-p ABI] [-l LOG] [ABI]
#   ABI  the target kernel (default the role k61); -p the bundles' kernel (default k61_same)
# Needs root (build-bundle.sh), qemu, a static busybox, gcc, pci.ids; strace or perf for -P. Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (default 1800), BENCH_RESULTS (default
# bench/results.md; "-" for none).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runs=5 profile=strace
rest=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -n) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "start-to-ready: -n needs a count" >&2; exit 2; }; runs=$2; shift 2 ;;
    -P) [[ ${2:-} =~ ^(strace|perf|none)$ ]] || { echo "start-to-ready: -P strace|perf|none" >&2; exit 2; }; profile=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/../tests/e2e/vm-script.sh"
vm_args apl "${rest[@]}"
vm_kernels abi prev
vm_need agent busybox qemu gcc pci.ids
vm_root "build-bundle.sh builds in a private mount namespace"
results=${BENCH_RESULTS:-$HERE/results.md}

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")
e1000=$CACHE/$prev/modules/kernel/drivers/net/ethernet/intel/e1000/e1000.ko
[[ -f $e1000 ]] || vm_die "no e1000.ko of $prev_kver at $e1000"
echo "start-to-ready: target $kver, bundles built for $prev_kver, $runs runs each" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-bench-ready.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
vm_host_root "$root" "$kdir" "$agent" e1000
depmod -b "$root" "$kver" || vm_die "depmod -b $root $kver failed" # modules.dep of the files present
vm_bundle "$prev" "$root/opt/lib/modules/$prev_kver"
mkdir -p "$root/opt/lib/firmware" "$root/bundles/e1000" "$root/bundles/e1000-firmware" "$root/etc/modprobe.d" "$root/var/lib"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/opt/lib/firmware/"
cp "$e1000" "$root/bundles/e1000/"
with_libs() { # with_libs TOOL: TOOL at /usr/bin in the root, with the libraries it loads
  local bin lib
  bin=$(command -v "$1") || vm_die "no $1 for -P $1"
  mkdir -p "$root/usr/bin"
  cp -L "$bin" "$root/usr/bin/$1"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      [[ -e $root$lib ]] || cp -L "$lib" "$root$lib"
    done
}
[[ $profile == none ]] || with_libs "$profile"
sets="test:/opt/lib/modules/$prev_kver:/opt/lib/firmware:agent_test_helper,agent_test_nic"
sets+=" e1000:/bundles/e1000:/bundles/e1000-firmware:e1000"
vm_init "$root" bench "RUNS=$runs" "PROFILE=$profile" "SETS=$sets"
vm_pack "$root" "$work/initrd.cpio"
vm_run "$work/initrd.cpio" 1800 "" "$runs runs per bundle"

python3 "$HERE/start-to-ready-report.py" "$SERIAL" "$results" "$kver" "$prev_kver" "$runs"
