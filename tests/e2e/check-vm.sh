#!/usr/bin/env bash
# `agent --check` on a real kernel: boot it ONCE under qemu (TCG) from a busybox initramfs that
# is a small but real host (the agent and its shared libraries, pci.ids, the kernel's
# /lib/modules/<kver> with its indexes and a subset of its modules, the `build` link to the
# headers with Module.symvers, /boot/vmlinuz-<kver>, /etc/os-release; /proc, /sys, /dev and
# securityfs mounted live), run the agent there on three bundles, then insert the prebuilt
# module with raw init_module and see whether the kernel did what the agent predicted.
#
# The VM has no Intel GPU, but qemu's NIC is an Intel e1000 (8086:100e) at 0000:00:03.0: a
# bundle that ships e1000.ko drives it by its own alias table, with nothing faked.
#
#   prebuilt      /opt/lib/modules/<kver of -p>/e1000.ko, found by the agent's default search
#                 (the image's only bundle): PREBUILT (exit 0), 0000:00:03.0 8086:100e driven
#                 by bundle module e1000, no driver bound yet
#   changed       --bundle with -c's e1000.ko (another kABI): BUILD (exit 10) when the target's
#                 headers (Makefile, Module.symvers) are there, else REFUSE (20)
#   no-device     --bundle with -p's i915.ko only: NO-DEVICE (exit 30)
#   insert        -c's e1000 then -p's e1000 with init_module: each errno must be the one the
#                 agent predicted (modules[].errno); then 0000:00:03.0 must be bound to e1000
#                 (proof: the live e1000's build-id, /sys/module/e1000/notes, is the bundle's)
#   after-insert  the default bundle again, e1000 now live: PREBUILT (exit 0), the device's
#                 driver e1000, the live e1000 not blocking (the bundle's own, or removable)
#
# Usage: check-vm.sh [-s] [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]
#   Each ABI is a directory of the kernel cache or a kernel role of fetch-kernels.sh.
#   ABI       the target kernel, default the role k61 (6.1.0-56 while the archive serves it)
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -p ABI    source of the prebuilt bundle, must have the target's kABI (default k61_same,
#             the same CRCs as k61)
#   -c ABI    source of the changed-kABI bundle, must not (default k61_old); e.g. for 6.12:
#             check-vm.sh -p k612 -c k612_old k612
#   -l LOG    keep the whole serial console there
#   -s        short: the whole text output of the prebuilt run only, of the others their
#             decision and reasons (for the demo)
# Output: the agent's text output of each run inside the VM and the kernel's messages at the
# inserts, then one line per assertion "PASS|FAIL <what>", then "N passed, M failed".
# Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 900), QEMU, BUSYBOX (static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"

vm_args sapcl "$@"
vm_kernels abi prev old
echo "check-vm: target $abi, prebuilt bundle from $prev, changed-kABI bundle from $old" >&2
vm_other_kabi "$prev"
vm_need agent busybox qemu gcc pci.ids

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")

mod() { # mod ABI NAME -> path of the in-tree module NAME (.ko or .ko.xz) of that kernel
  local rel
  rel=$(grep -m1 -oE "^([^:]*/)?$2\.ko(\.(xz|zst|gz))?:" "$CACHE/$1/modules/modules.dep") \
    || vm_die "no $2 module in $CACHE/$1"
  echo "$CACHE/$1/modules/${rel%:}"
}
put_module() { # put_module SRC DEST: uncompressed (tryload hands the kernel the file's bytes)
  mkdir -p "$(dirname "$2")"
  case $1 in
    *.xz) xz -dc "$1" >"$2" ;;
    *.zst) zstd -qdc "$1" >"$2" ;;
    *.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-check-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# The target kernel as a host has it (vm_host_root): the agent with its libraries and pci.ids,
# the module tree with all its indexes but only some modules (those the agent reads for
# vermagic, a sample and the bundle's in-tree counterparts and dependencies), the build/source
# links, the headers they point to, the kernel image (its built-in certificates) and config.
vm_host_root "$root" "$kdir" "$agent" e1000 i915 crc32_generic dummy loop fat
headers=$VM_HEADERS
# Is a build on the node possible? The agent wants a Makefile and Module.symvers there.
expect_changed=20
[[ -n $headers && -f $root$headers/Makefile && -f $root$headers/Module.symvers ]] && expect_changed=10

# The bundles: -p's e1000 is the image's only bundle under /opt/lib/modules (the agent's
# default search); the others are given with --bundle.
put_module "$(mod "$prev" e1000)" "$root/opt/lib/modules/$prev_kver/e1000.ko"
put_module "$(mod "$old" e1000)" "$root/bundles/e1000-$old/e1000.ko"
put_module "$(mod "$prev" i915)" "$root/bundles/i915-$prev/i915.ko"

vm_init "$root" check PREV="$prev" OLD="$old" PREV_KVER="$prev_kver"
vm_pack "$root" "$work/initrd.cpio"

vm_run "$work/initrd.cpio" 900 "" ""

python3 "$HERE/check-check.py" "$SERIAL" "$prev" "$old" "$prev_kver" "$NIC_BDF" "$expect_changed" \
  "$(vm_file_id "$root/opt/lib/modules/$prev_kver/e1000.ko")" "$short"
