# shellcheck shell=bash
# Shared by build-rootfs.sh and systemd-rootfs.sh (sourced): a Debian root made by mmdebstrap,
# kept as an uncompressed cpio in the kernel cache under the digest of its recipe.
# Needs: die (the caller's), vm-lib.sh's vm_pack.

# rootfs_lib_packages AGENT: the packages that own the libraries `ldd AGENT` names (libc6,
# libpci3, libudev1, ...), so that a root follows the binary's link line without holding it
rootfs_lib_packages() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
      owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null) ||
        { echo "no package owns $lib (ldd $1)" >&2; exit 1; }
      echo "${owner%%:*}"
    done | sort -u | tr '\n' ' '
}

# rootfs_cached NAME OUT: takes the store's lock (held until the caller exits); when OUT is
# there, prints it and ends the caller
rootfs_cached() {
  mkdir -p "$(dirname "$2")"
  exec 7>"$(dirname "$2")/.lock"
  flock 7
  if [[ -f $2 ]]; then
    echo "$1: cached $2 ($(($(stat -c %s "$2") / 1048576)) MiB)" >&2
    echo "$2"
    exit 0
  fi
}

# rootfs_work NAME: a work directory removed at exit (work), the root to make in it (root), the
# start (start)
rootfs_work() {
  work=$(mktemp -d "${TMPDIR:-/tmp}/agent-$1.XXXXXX")
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$work'" EXIT
  root=$work/root start=$SECONDS
}

# rootfs_installed ROOT PACKAGE...: each PACKAGE is installed in ROOT, else die
rootfs_installed() {
  local root=$1 p
  shift
  for p; do
    # shellcheck disable=SC2016 # dpkg-query's format
    [[ $(chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] ||
      die "$p is not installed in the root"
  done
}

# rootfs_store NAME ROOT OUT PREFIX START DEBSTRAP_SECONDS INFO: ROOT packed as OUT (the cpios
# named PREFIX*, earlier recipes', removed), OUT.info its time and size with INFO; prints OUT
rootfs_store() {
  local name=$1 root=$2 out=$3 prefix=$4 start=$5 debstrap_s=$6 info=$7 size_kib
  size_kib=$(du -sk "$root" | cut -f1)
  vm_pack "$root" "$root.cpio"
  rm -f "$prefix"*.cpio "$prefix"*.cpio.info
  mv "$root.cpio" "$out"
  echo "$((SECONDS - start)) s in all, mmdebstrap $debstrap_s s; $((size_kib / 1024)) MiB unpacked; $info" >"$out.info"
  echo "$name: made $out in $((SECONDS - start)) s (mmdebstrap ${debstrap_s} s): $((size_kib / 1024)) MiB" \
    "unpacked, cpio $(($(stat -c %s "$out") / 1048576)) MiB" >&2
  echo "$out"
}
