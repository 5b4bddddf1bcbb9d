#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages. Idempotent; needs root.
#   setup.sh           everything the tests need
#   setup.sh --build   only what building the agent needs (the README's quick start)
set -euo pipefail

BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libkmod-dev libelf-dev libdw-dev libudev-dev libpci-dev pci.ids libspdlog-dev libfmt-dev nlohmann-json3-dev
  catch2 libcli11-dev libexpected-dev zlib1g-dev liblzma-dev libzstd-dev libssl-dev libkeyutils-dev
)
TEST_PACKAGES=(
  kmod xz-utils zstd gzip cpio openssl python3 libc6-dev
  gcc-12 make binutils util-linux
  qemu-system-x86 busybox-static umockdev libumockdev-dev
  dkms mmdebstrap
  clang libclang-rt-14-dev hyperfine time
  shellcheck yamllint
  systemd
  podman crun python3-yaml
  procps strace ccache
)
case ${1:-} in
  --build) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  "") PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
  *) echo "usage: $0 [--build]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]} (run as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#PACKAGES[@]} packages present"
