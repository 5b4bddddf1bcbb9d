#!/usr/bin/env bash
# A real Debian 12 root filesystem for build-vm.sh: the node on which the agent builds the
# image's DKMS sources, booted as the VM's whole root (an uncompressed initramfs).
#   Debian bookworm from deb.debian.org, `mmdebstrap --variant=minbase`, documentation, man
#   pages and locales left out (dpkg path-exclude), with the compiler and what DKMS needs
#   (gcc-12, make, dkms, kmod, libc6-dev, procps, binutils; mount and mawk, which minbase
#   lacks, for the VM's /init), the agent's runtime libraries (the packages that own what
#   `ldd AGENT` names: dpkg -S on this Debian 12 machine, the same archive, so the root follows
#   the binary's link line), what the headers .debs depend on (their Depends fields:
#   linux-compiler-gcc-12-x86, libelf1, ...), and the kernel's headers as Debian installs them:
#   linux-headers-<abi>-amd64, linux-headers-<abi>-common and linux-kbuild-<series>, the .debs
#   kept by `fetch-kernels.sh --kbuild` installed with dpkg inside (the archive drops them
#   with the ABI); plus the kernel's /lib/modules/<kver> from the kernel cache: every index,
#   but only the named modules and their dependencies (never e1000: qemu's NIC stays free for
#   the test driver), /boot/vmlinuz-<kver> and its config.
# Cached in $CACHE/build-vm-rootfs/rootfs-<abi>-<digest>.cpio (newc, uncompressed; .info: time
# and size), the digest over the recipe: mmdebstrap's arguments (the package list included), the
# mirror, the .debs, the kernel release, the module list and POST (the version of the steps
# after mmdebstrap): a changed recipe makes a new one (and removes the old). The agent binary
# itself is not in it (build-vm.sh appends the image's parts as a second cpio), only the
# packages of its libraries.
#
#   build-rootfs.sh ROLE|ABI AGENT [MODULE...]   prints the cpio's path (stdout)
# MODULE: the in-tree modules in the root's tree (with their dependencies; never e1000),
# default: overlay (the build's mount plan) and loop, dummy, fat, crc32_generic (the agent's
# sample of the kernel's own modules, as in lifecycle-vm.sh).
# Exit 0, 1 on failure (mmdebstrap's output on stderr), 2 on usage.
# Env: AGENT_KERNEL_CACHE, MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
# shellcheck source=tests/e2e/rootfs-lib.sh
. "$HERE/rootfs-lib.sh"

die() { echo "build-rootfs: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || { echo "usage: build-rootfs.sh ROLE|ABI AGENT [MODULE...]" >&2; exit 2; }
target=$1 agent=$2
shift 2
modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=(overlay loop dummy fat crc32_generic)
for m in "${modules[@]}"; do [[ $m != e1000 ]] || die "e1000 must not be in the VM: qemu's NIC is the test driver's"; done
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap --mode=root, dpkg in the chroot)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap (tests/setup.sh installs it)"
[[ -x $agent ]] || die "no agent binary at $agent"

bash "$HERE/fetch-kernels.sh" --kbuild "$target" >&2 || die "fetch-kernels.sh --kbuild $target failed"
abi=$(vm_abi "$target") && [[ -n $abi ]] || die "no kernel for $target"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
series=$(<"$kdir/kbuild/.done")
debs=("$kdir/kbuild/debs/linux-headers-$abi-amd64_"*.deb "$kdir/kbuild/debs/linux-headers-$abi-common_"*.deb
  "$kdir/kbuild/debs/linux-kbuild-${series}_"*.deb)
for d in "${debs[@]}"; do [[ -f $d ]] || die "no $d (fetch-kernels.sh --kbuild $target keeps them)"; done

# The agent's runtime libraries -> their packages (libc6, libpci3, libudev1, ...), so the
# rootfs follows the binary's link line without holding the binary.
libpkgs=$(rootfs_lib_packages "$agent") || die "cannot map the agent's libraries to packages"
# What the headers .debs depend on besides each other (linux-compiler-gcc-12-x86, libelf1, ...),
# from the archive, so that dpkg -i finds it installed.
debdeps=$(
  for d in "${debs[@]}"; do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
    sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | sed '/^$/d' |
    grep -vxE "linux-headers-$abi-(amd64|common)|linux-kbuild-$series" | sort -u | tr '\n' ' '
)
packages="gcc-12 make dkms kmod libc6-dev procps binutils mount mawk $debdeps $libpkgs"
packages=$(tr ' ' '\n' <<<"$packages" | sed '/^$/d' | sort -u | tr '\n' ',')
packages=${packages%,}

# The recipe: mmdebstrap's arguments (the hooks' paths are fixed: /tmp/kernel-debs in the
# root), the headers .debs, the module list, and the steps after mmdebstrap (their version:
# bump POST when they change).
POST=1
# shellcheck disable=SC2016 # $1 is the hooks' (the root directory)
recipe=(--mode=root --variant=minbase --include="$packages"
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/gcc/python/*'
  --customize-hook='chroot "$1" sh -c "dpkg -i /tmp/kernel-debs/*.deb"'
  --customize-hook='rm -rf "$1/tmp/kernel-debs" "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb'
  bookworm)
digest=$(
  {
    printf '%s\n' "${recipe[@]}" "$MIRROR" "post $POST" "$abi $kver" "${modules[@]}"
    sha256sum "${debs[@]}" | cut -d' ' -f1
  } | sha256sum | cut -c1-16
)
store=$CACHE/build-vm-rootfs
out=$store/rootfs-$abi-$digest.cpio
rootfs_cached build-rootfs "$out"

rootfs_work build-rootfs
echo "build-rootfs: mmdebstrap bookworm ($packages) + $kver's headers .debs" >&2
mkdir -p "$work/debs"
cp "${debs[@]}" "$work/debs/"
mmdebstrap "${recipe[@]:0:${#recipe[@]}-3}" \
  --customize-hook="mkdir -p \"\$1/tmp/kernel-debs\" && cp $work/debs/*.deb \"\$1/tmp/kernel-debs/\"" \
  "${recipe[@]: -3}" "$root" "$MIRROR" >&2 || die "mmdebstrap failed"
debstrap_s=$((SECONDS - start))
rootfs_installed "$root" "linux-headers-$abi-amd64" "linux-headers-$abi-common" "linux-kbuild-$series" dkms gcc-12
[[ -L $root/lib/modules/$kver/build && -f $root$(readlink "$root/lib/modules/$kver/build")/Makefile ]] ||
  die "no /lib/modules/$kver/build -> headers in the root"

# The kernel's module tree: indexes + the named modules and their dependencies, the image, config.
vm_module_subset "$root" "$kdir" "${modules[@]}"
[[ ! -e $root/lib/modules/$kver/kernel/drivers/net/ethernet/intel/e1000 ]] || die "e1000 got into the root"
mkdir -p "$root/boot"
cp -L "$kdir/vmlinuz" "$root/boot/vmlinuz-$kver"
cp -L "$kdir/root/boot/config-$kver" "$root/boot/"
cp -L "$kdir/root/boot/System.map-$kver" "$root/boot/" 2>/dev/null || true

rootfs_store build-rootfs "$root" "$out" "$store/rootfs-$abi-" "$start" "$debstrap_s" "packages: $packages; kernel $kver"
