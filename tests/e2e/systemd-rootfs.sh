#!/usr/bin/env bash
# A Debian 12 root with systemd for systemd-vm.sh: booted as the VM's whole root (an uncompressed
# initramfs, systemd as PID 1 by rdinit=/lib/systemd/systemd), a plain host without Kubernetes.
# build-rootfs.sh's approach with another recipe: `mmdebstrap --variant=minbase` of bookworm,
# documentation, man pages and locales left out (dpkg path-exclude), with systemd, udev (a
# host's coldplug, which the unit is ordered after), kmod, pci.ids and the agent's runtime
# libraries (the packages that own what `ldd AGENT` names, so the root follows the binary's
# link line without holding the binary); no compiler and no kernel headers (a changed kABI is
# refused there: nothing to build with). What a boot to multi-user.target does not need here is
# masked (gettys, logind - no D-Bus -, binfmt, timers), so it reaches the test in seconds. No
# kernel: systemd-vm.sh adds the kernel's module tree per run (a few MiB), so this root does not
# depend on the kernel's ABI and is made once.
# Cached in $CACHE/systemd-vm-rootfs/rootfs-<digest>.cpio (.info: time and size), the digest over
# the recipe (mmdebstrap's arguments with the package list, the mirror, POST): a changed recipe
# makes a new one (and removes the old).
#
#   systemd-rootfs.sh AGENT   prints the cpio's path (stdout)
# Exit 0, 1 on failure (mmdebstrap's output on stderr), 2 on usage.
# Env: AGENT_KERNEL_CACHE, MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# shellcheck source=tests/e2e/vm-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-lib.sh"
# shellcheck source=tests/e2e/rootfs-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/rootfs-lib.sh"

die() { echo "systemd-rootfs: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || { echo "usage: systemd-rootfs.sh AGENT" >&2; exit 2; }
agent=$1
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap --mode=root)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap (tests/setup.sh installs it)"
[[ -x $agent ]] || die "no agent binary at $agent"

libpkgs=$(rootfs_lib_packages "$agent") || die "cannot map the agent's libraries to packages"
packages=$(tr ' ' '\n' <<<"systemd udev kmod pci.ids $libpkgs" | sed '/^$/d' | sort -u | tr '\n' ',')
packages=${packages%,}

# Units a VM that only runs the test does not need: each costs seconds under TCG, and logind
# fails without D-Bus anyway. serial-getty@ is what console=ttyS0 would start.
masked=(serial-getty@.service getty@.service console-getty.service getty-static.service systemd-logind.service
  proc-sys-fs-binfmt_misc.automount systemd-binfmt.service
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer
  systemd-tmpfiles-clean.timer man-db.timer systemd-update-utmp.service
  systemd-update-utmp-runlevel.service)
mask_hook="for u in ${masked[*]}; do ln -sf /dev/null \"\$1/etc/systemd/system/\$u\"; done"

POST=1
# shellcheck disable=SC2016 # $1 is the hooks' (the root directory)
recipe=(--mode=root --variant=minbase --include="$packages"
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --customize-hook="$mask_hook"
  --customize-hook='ln -sf /lib/systemd/system/multi-user.target "$1/etc/systemd/system/default.target"'
  --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*'
  bookworm)
digest=$(
  printf '%s\n' "${recipe[@]}" "$MIRROR" "post $POST" | sha256sum | cut -c1-16
)
store=$CACHE/systemd-vm-rootfs
out=$store/rootfs-$digest.cpio
rootfs_cached systemd-rootfs "$out"

rootfs_work systemd-rootfs
echo "systemd-rootfs: mmdebstrap bookworm ($packages)" >&2
mmdebstrap "${recipe[@]}" "$root" "$MIRROR" >&2 || die "mmdebstrap failed"
debstrap_s=$((SECONDS - start))
rootfs_installed "$root" systemd udev kmod pci.ids
[[ -x $root/lib/systemd/systemd ]] || die "no /lib/systemd/systemd in the root"
! compgen -G "$root/usr/src/linux-headers-*" >/dev/null || die "kernel headers got into the root"

rootfs_store systemd-rootfs "$root" "$out" "$store/rootfs-" "$start" "$debstrap_s" "packages: $packages"
