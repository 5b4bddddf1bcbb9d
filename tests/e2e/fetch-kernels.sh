#!/usr/bin/env bash
# Fetch real Debian kernels (image with modules, headers with Module.symvers) into a cache
# outside the repository, unpacked once per ABI:
#   $CACHE/<abi>/root/{boot,lib,usr}/...     the unpacked packages
#   $CACHE/<abi>/vmlinuz                      the kernel image
#   $CACHE/<abi>/modules -> .../modules/<kver> the module tree (/lib/modules/<kver>), with the
#                                             modules.dep etc. that depmod makes at install
#   $CACHE/<abi>/Module.symvers               from the headers package
#   $CACHE/<abi>/.done                        written last: a partial fetch is redone
# Uses its own apt lists (bookworm + trixie) and never touches the system's sources.
# Usage: fetch-kernels.sh [ABI...]   (default: every ABI the tests use)
set -euo pipefail

CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
DEFAULT_ABIS=(6.1.0-47 6.1.0-55 6.1.0-56 6.12.94+deb13 6.12.107+deb13)
if [[ $# -gt 0 ]]; then ABIS=("$@"); else ABIS=("${DEFAULT_ABIS[@]}"); fi

APT_DIR="$CACHE/.apt"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
cat >"$APT_DIR/sources.list" <<SOURCES
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian trixie main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security trixie-security main
SOURCES
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR" -o Dir::State::status=/dev/null
  -o APT::Architecture=amd64 -q)

lists_fresh() {
  [[ -n $(find "$APT_DIR/lists" -maxdepth 1 -name '*Packages*' -mmin -720 -print -quit) ]]
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
  if ! lists_fresh; then apt-get "${APT_OPTS[@]}" update >&2; fi
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
  local image="linux-image-$abi-amd64-unsigned" headers="linux-headers-$abi-amd64"
  (cd "$dir/debs" && apt-get "${APT_OPTS[@]}" download "$image" "$headers" >&2)
  local deb
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  local kver="$abi-amd64" mods
  for mods in "$dir/root/lib/modules/$kver" "$dir/root/usr/lib/modules/$kver"; do
    [[ -d $mods/kernel ]] && break
  done
  [[ -d $mods/kernel ]] || { echo "fetch-kernels: no module tree for $kver" >&2; return 1; }
  ln -sfn "${mods#"$dir"/}" "$dir/modules"
  local vmlinuz
  for vmlinuz in "$dir/root/boot/vmlinuz-$kver" "$mods/vmlinuz"; do [[ -f $vmlinuz ]] && break; done
  ln -sfn "${vmlinuz#"$dir"/}" "$dir/vmlinuz"
  cp "$dir/root/usr/src/linux-headers-$kver/Module.symvers" "$dir/Module.symvers"
  # The headers' build link points outside the cache; tests never follow it.
  rm -rf "$dir/debs"
  run_depmod "$dir" "$kver"
  echo "$kver" >"$dir/.done"
  echo "fetch-kernels: $abi unpacked into $dir"
}

for abi in "${ABIS[@]}"; do fetch_one "$abi"; done
