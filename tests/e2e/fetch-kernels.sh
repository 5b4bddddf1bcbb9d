#!/usr/bin/env bash
# Fetch real Debian kernels (image with modules, headers with Module.symvers) into a cache
# outside the repository, unpacked once per ABI:
#   $CACHE/<abi>/root/{boot,lib,usr}/...     the unpacked packages
#   $CACHE/<abi>/vmlinuz                      the kernel image (boot/vmlinuz-<kver>, or
#                                             usr/lib/modules/<kver>/vmlinuz[.unsigned])
#   $CACHE/<abi>/modules -> .../modules/<kver> the module tree (/lib/modules/<kver>), with the
#                                             modules.dep etc. that depmod makes at install
#   $CACHE/<abi>/Module.symvers               from the headers package
#   $CACHE/<abi>/.done                        written last: a partial fetch is redone
# Uses its own apt lists (bookworm + trixie + sid) and never touches the system's sources.
# Packages: linux-image-<abi>-amd64-unsigned (image + modules; bookworm, trixie), or where
# that does not exist the split of sid's 7.x kernels: linux-binary-unsigned-<abi>-amd64 (the
# image, usr/lib/modules/<kver>/vmlinuz.unsigned) + linux-modules-<abi>-amd64 +
# linux-base-<abi>-amd64 (config, modules.builtin, modules.order); always
# linux-headers-<abi>-amd64 (Module.symvers). Download per ABI: 6.1 ~72 MB, 6.12 ~111 MB,
# 7.2.13+deb14 ~127 MB (binary 14 + modules 110 + headers 2 + base 0.5).
# sid serves one kernel version at a time, so its ABI is not pinned: the name `sid` means the
# newest 7.x+ ABI already in the cache, else the newest sid offers (`--resolve sid` prints it).
# Usage: fetch-kernels.sh [ABI|sid...]   (default: every ABI the tests use)
#        fetch-kernels.sh --resolve sid
set -euo pipefail

CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
DEFAULT_ABIS=(6.1.0-47 6.1.0-55 6.1.0-56 6.12.94+deb13 6.12.107+deb13 sid)
resolve_only=0
if [[ ${1:-} == --resolve ]]; then
  resolve_only=1
  shift
fi
if [[ $# -gt 0 ]]; then ABIS=("$@"); else ABIS=("${DEFAULT_ABIS[@]}"); fi

APT_DIR="$CACHE/.apt"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
SOURCES="deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian trixie main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security trixie-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian sid main"
# Lists made from other sources (an older version of this script) are not fresh.
sources_changed=0
if [[ ! -f $APT_DIR/sources.list || $(<"$APT_DIR/sources.list") != "$SOURCES" ]]; then
  echo "$SOURCES" >"$APT_DIR/sources.list"
  sources_changed=1
fi
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR" -o Dir::State::status=/dev/null
  -o APT::Architecture=amd64 -q)

lists_fresh() {
  [[ $sources_changed -eq 0 ]] || return 1
  [[ -n $(find "$APT_DIR/lists" -maxdepth 1 -name '*Packages*' -mmin -720 -print -quit) ]]
}

known() { # known PACKAGE: the private lists have it
  [[ -n $(apt-cache "${APT_OPTS[@]}" madison "$1" 2>/dev/null) ]]
}

# Debian packages do not ship modules.dep & co (postinst runs depmod): generate them. depmod -b
# looks under BASE/lib/modules, so a usr-merged tree (trixie) gets BASE/lib -> usr/lib, as on
# a real usr-merged system.
run_depmod() {
  local dir=$1 kver=$2
  [[ -e $dir/root/lib ]] || ln -s usr/lib "$dir/root/lib"
  depmod -b "$dir/root" "$kver"
  [[ -s $dir/modules/modules.dep ]] || { echo "fetch-kernels: depmod made no modules.dep in $dir" >&2; return 1; }
}

fetch_one() {
  local abi=$1 dir="$CACHE/$1"
  if [[ -f $dir/.done ]]; then
    [[ -s $dir/modules/modules.dep ]] || run_depmod "$dir" "$(<"$dir/.done")"
    echo "fetch-kernels: $abi cached in $dir"
    return 0
  fi
  if ! lists_fresh; then
    apt-get "${APT_OPTS[@]}" update >&2
    sources_changed=0
  fi
  local pkgs=("linux-image-$abi-amd64-unsigned")
  if ! known "${pkgs[0]}"; then # sid 7.x: image and modules in two packages
    pkgs=("linux-binary-unsigned-$abi-amd64" "linux-modules-$abi-amd64" "linux-base-$abi-amd64")
    if ! known "${pkgs[0]}" || ! known "${pkgs[1]}" || ! known "${pkgs[2]}"; then
      echo "fetch-kernels: no linux-image-$abi-amd64-unsigned nor ${pkgs[*]} in the archive" >&2
      return 1
    fi
  fi
  pkgs+=("linux-headers-$abi-amd64")
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
  (cd "$dir/debs" && apt-get "${APT_OPTS[@]}" download "${pkgs[@]}" >&2)
  local deb
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  local kver="$abi-amd64" mods
  for mods in "$dir/root/lib/modules/$kver" "$dir/root/usr/lib/modules/$kver"; do
    [[ -d $mods/kernel ]] && break
  done
  [[ -d $mods/kernel ]] || { echo "fetch-kernels: no module tree for $kver" >&2; return 1; }
  ln -sfn "${mods#"$dir"/}" "$dir/modules"
  local vmlinuz
  for vmlinuz in "$dir/root/boot/vmlinuz-$kver" "$mods/vmlinuz" "$mods/vmlinuz.unsigned"; do
    [[ -f $vmlinuz ]] && break
  done
  [[ -f $vmlinuz ]] || { echo "fetch-kernels: no kernel image for $kver" >&2; return 1; }
  ln -sfn "${vmlinuz#"$dir"/}" "$dir/vmlinuz"
  cp "$dir/root/usr/src/linux-headers-$kver/Module.symvers" "$dir/Module.symvers"
  # The headers' build link points outside the cache; tests never follow it.
  rm -rf "$dir/debs"
  run_depmod "$dir" "$kver"
  echo "$kver" >"$dir/.done"
  echo "fetch-kernels: $abi unpacked into $dir"
}

# The sid ABI: the newest one of 7.x or later already fetched, else the newest sid serves.
resolve_sid() {
  local cached
  cached=$(find "$CACHE" -mindepth 2 -maxdepth 2 -name .done -printf '%h\n' 2>/dev/null |
    xargs -r -n1 basename | grep -E '^([7-9]|[1-9][0-9])\.[0-9.]+\+deb[0-9]+$' | sort -V | tail -n 1 || true)
  if [[ -n $cached ]]; then
    echo "$cached"
    return 0
  fi
  if ! lists_fresh; then
    apt-get "${APT_OPTS[@]}" update >&2
    sources_changed=0
  fi
  local newest
  newest=$(apt-cache "${APT_OPTS[@]}" pkgnames linux-binary-unsigned- 2>/dev/null |
    sed -nE 's/^linux-binary-unsigned-(([7-9]|[1-9][0-9])\.[0-9.]+\+deb[0-9]+)-amd64$/\1/p' | sort -V | tail -n 1)
  [[ -n $newest ]] || { echo "fetch-kernels: sid offers no linux-binary-unsigned-*-amd64 kernel" >&2; return 1; }
  echo "$newest"
}

resolved=()
for abi in "${ABIS[@]}"; do
  if [[ $abi == sid ]]; then abi=$(resolve_sid); fi
  resolved+=("$abi")
done
if [[ $resolve_only -eq 1 ]]; then
  printf '%s\n' "${resolved[@]}"
  exit 0
fi
ABIS=("${resolved[@]}")

for abi in "${ABIS[@]}"; do fetch_one "$abi"; done
