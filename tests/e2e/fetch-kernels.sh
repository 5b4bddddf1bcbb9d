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
# linux-headers-<abi>-amd64 (Module.symvers). (The download sizes: tests/e2e/README.md.)
# Kernels are chosen by ROLE, resolved from the archive's package lists (Debian's archive
# drops old ABIs): each role's pinned ABI while the archive serves it (results stay
# comparable), else the one the rule picks. Same/different CRCs are decided on the real
# Module.symvers of the candidates (only their small linux-headers-<abi>-amd64 are downloaded;
# the CRC digests are cached in $CACHE/.symvers/<abi>.sum).
#   k61            a 6.1 ABI (bookworm) with another of identical CRCs: 6.1.0-56, else the
#                  newest such
#   k61_same       another 6.1 ABI with CRCs identical to k61's: 6.1.0-55, else the newest such
#   k61_old        a 6.1 ABI older than k61 whose CRCs, module_layout's too, differ from k61's:
#                  6.1.0-47, else the oldest such
#   k612, k612_old two trixie 6.12 ABIs whose CRCs differ, the newer and the older by version:
#                  6.12.107+deb13 (else the newest) and 6.12.94+deb13 (else the newest that
#                  differs). Whether module_layout differs too is not part of the role.
#   nomodversions  a kernel built without MODVERSIONS (all CRCs 0): sid's newest 7.x+
# The resolution is $CACHE/roles.env (ROLE=ABI lines, every consumer reads it), redone when
# the lists are refreshed (every 12 hours at most). A role no served kernel fills is an error.
# $CACHE/.lock (flock) serializes runs on one cache.
# Usage: fetch-kernels.sh [ROLE|ABI|sid...]  fetch them (default: every role); sid is
#                                            nomodversions
#        fetch-kernels.sh --role ROLE        print ROLE's ABI (resolving, not fetching)
#        fetch-kernels.sh --roles            print every ROLE=ABI
#        fetch-kernels.sh --resolve sid      the same as --role nomodversions
#        fetch-kernels.sh --kbuild ROLE|ABI...
#            also what building modules against the ABI's headers needs (fetching the ABI
#            first): Debian's linux-headers-<abi>-amd64 includes linux-headers-<abi>-common and
#            its `scripts` link to linux-kbuild-<series>. Unpacked into $CACHE/<abi>/kbuild/
#            (usr/src/linux-headers-<abi>-common, usr/lib/linux-kbuild-<series>; .done holds
#            the series), beside root/, which stays as it was; the three headers .debs
#            (-amd64, -common, linux-kbuild) are kept in kbuild/debs/. Debian's headers are not
#            relocatable: bind them at their canonical paths to build (see
#            tests/fixtures/kmod-src/build-bundle.sh).
set -euo pipefail

CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
ROLES=(k61 k61_same k61_old k612 k612_old nomodversions)
ROLES_FILE="$CACHE/roles.env"
APT_DIR="$CACHE/.apt"
STAMP="$APT_DIR/lists.updated" # touched by every apt-get update of the private lists
SUMS="$CACHE/.symvers"

die() { echo "fetch-kernels: $*" >&2; exit 1; }
usage() { die "usage: fetch-kernels.sh [ROLE|ABI|sid...] | --kbuild ROLE|ABI... | --role ROLE | --roles | --resolve sid"; }

mode=fetch want_role=""
case ${1:-} in
  --kbuild) [[ $# -ge 2 ]] || usage; mode=kbuild; shift ;;
  --role | --resolve)
    [[ $# -eq 2 ]] || usage
    mode=role want_role=$2
    [[ $want_role != sid ]] || want_role=nomodversions
    ;;
  --roles) [[ $# -eq 1 ]] || usage; mode=roles ;;
  -*) usage ;;
esac
is_role() { local r; for r in "${ROLES[@]}"; do [[ $r == "$1" ]] && return 0; done; return 1; }
[[ -z $want_role ]] || is_role "$want_role" || die "no role $want_role (roles: ${ROLES[*]})"

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SOURCES="deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian trixie main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security trixie-security main
deb [signed-by=$KEYRING] http://deb.debian.org/debian sid main"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR" -o Dir::State::status=/dev/null
  -o APT::Architecture=amd64 -q
  # Downloads into root's own cache: apt's _apt sandbox user could not write there (and says so
  # for every file, "Download is performed unsandboxed as root").
  -o APT::Sandbox::User=root)

# Lists made from other sources (an older version of this script) are not fresh.
lists_fresh() {
  [[ -f $APT_DIR/sources.list && $(<"$APT_DIR/sources.list") == "$SOURCES" ]] || return 1
  [[ -n $(find "$STAMP" -mmin -720 -print 2>/dev/null) ]]
}
# The resolution is current when made from the lists as they are now.
roles_current() { lists_fresh && [[ -f $ROLES_FILE && ! $STAMP -nt $ROLES_FILE ]]; }
role_of() { # ROLE -> its ABI from roles.env
  sed -n "s/^$1=//p" "$ROLES_FILE" | tail -n 1
}

# Quick answers without the lock: roles.env is only ever replaced whole.
if [[ $mode == role || $mode == roles ]] && roles_current; then
  if [[ $mode == role ]]; then role_of "$want_role"; else grep -E '^[a-z0-9_]+=' "$ROLES_FILE"; fi
  exit 0
fi

# One run at a time on a cache: a second one waits.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  echo "fetch-kernels: waiting for another fetch-kernels.sh on $CACHE" >&2
  flock 9
fi

mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial"
ensure_lists() {
  lists_fresh && return 0
  echo "$SOURCES" >"$APT_DIR/sources.list"
  apt-get "${APT_OPTS[@]}" update >&2
  touch "$STAMP"
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
  ensure_lists
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

# The headers' -common half and the kbuild tools of the ABI's series (the newest the lists
# serve: linux-headers-<abi>-amd64 depends on linux-kbuild-<series> >= its own version).
kbuild_one() {
  local abi=$1 dir="$CACHE/$1/kbuild" series deb
  [[ -f $dir/.done && -f $dir/debs/.done ]] && { echo "fetch-kernels: kbuild of $abi cached in $dir"; return 0; }
  ensure_lists
  series=$(apt-cache "${APT_OPTS[@]}" show "linux-headers-$abi-amd64" 2>/dev/null |
    grep -m1 -oE 'linux-kbuild-[0-9][0-9.]*' | sed 's/^linux-kbuild-//') || true
  [[ -n $series ]] || { echo "fetch-kernels: linux-headers-$abi-amd64 names no linux-kbuild-<series>" >&2; return 1; }
  # The three headers packages are kept as .debs in debs/ (build-vm.sh installs them with dpkg
  # in a root filesystem; the archive drops an ABI's packages with the ABI).
  if [[ -f $dir/.done ]]; then # unpacked, but without the .debs: fetched now
    rm -rf "$dir/debs"{,.tmp} && mkdir -p "$dir/debs.tmp"
    if ! (cd "$dir/debs.tmp" && apt-get "${APT_OPTS[@]}" download "linux-headers-$abi-amd64" \
      "linux-headers-$abi-common" "linux-kbuild-$(<"$dir/.done")" >&2); then
      # What is unpacked still serves its users; only build-rootfs.sh needs the .debs (and says so).
      rm -rf "$dir/debs.tmp"
      echo "fetch-kernels: kbuild of $abi cached in $dir; its .debs are no longer served" >&2
      return 0
    fi
    touch "$dir/debs.tmp/.done" && mv "$dir/debs.tmp" "$dir/debs"
    echo "fetch-kernels: kbuild of $abi cached in $dir, its .debs fetched again"
    return 0
  fi
  rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp/debs"
  (cd "$dir.tmp/debs" && apt-get "${APT_OPTS[@]}" download "linux-headers-$abi-amd64" \
    "linux-headers-$abi-common" "linux-kbuild-$series" >&2) || return 1
  for deb in "$dir.tmp/debs/linux-headers-$abi-common_"*.deb "$dir.tmp/debs/linux-kbuild-${series}_"*.deb; do
    dpkg-deb -x "$deb" "$dir.tmp"
  done
  touch "$dir.tmp/debs/.done"
  [[ -f $dir.tmp/usr/src/linux-headers-$abi-common/Makefile && -d $dir.tmp/usr/lib/linux-kbuild-$series/scripts ]] ||
    { echo "fetch-kernels: linux-headers-$abi-common or linux-kbuild-$series unpacked without their Makefile / scripts" >&2; return 1; }
  echo "$series" >"$dir.tmp/.done"
  mv "$dir.tmp" "$dir"
  echo "fetch-kernels: kbuild of $abi (linux-headers-$abi-common, linux-kbuild-$series) unpacked into $dir"
}

# ---- roles ----------------------------------------------------------------------------------

served() { # ERE -> the ABIs matching it with a kernel package in the lists, oldest first
  apt-cache "${APT_OPTS[@]}" pkgnames linux- 2>/dev/null |
    sed -nE 's/^linux-image-(.+)-amd64-unsigned$/\1/p; s/^linux-binary-unsigned-(.+)-amd64$/\1/p' |
    { grep -E "^($1)\$" || true; } | sort -uV
}

# ABI: writes $SUMS/<abi>.sum, "CRCS LAYOUT NONZERO" of its Module.symvers: sha256 of the
# sorted "symbol crc" pairs, module_layout's CRC (- if none), the number of CRCs that are not 0.
# From the fetched kernel, else from its linux-headers-<abi>-amd64 alone (kept once made).
symvers_sum() {
  local abi=$1 sum="$SUMS/$1.sum" symvers tmp=""
  [[ ! -s $sum ]] || return 0
  mkdir -p "$SUMS"
  if [[ -f $CACHE/$abi/.done ]]; then
    symvers=$CACHE/$abi/Module.symvers
  else
    tmp=$(mktemp -d "$SUMS/tmp.XXXXXX")
    (cd "$tmp" && apt-get "${APT_OPTS[@]}" download "linux-headers-$abi-amd64" >&2) \
      || { rm -rf "$tmp"; die "cannot download linux-headers-$abi-amd64"; }
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards --no-anchored Module.symvers
    symvers=$tmp/usr/src/linux-headers-$abi-amd64/Module.symvers
    [[ -s $symvers ]] || { rm -rf "$tmp"; die "no Module.symvers in linux-headers-$abi-amd64"; }
  fi
  {
    awk '{ print $2, $1 }' "$symvers" | LC_ALL=C sort | sha256sum | cut -d' ' -f1
    awk '$2 == "module_layout" { l = $1 } END { print (l == "" ? "-" : l) }' "$symvers"
    awk '$1 !~ /^0x0+$/ { n++ } END { print n + 0 }' "$symvers"
  } | paste -sd' ' >"$sum.tmp"
  mv "$sum.tmp" "$sum"
  [[ -z $tmp ]] || rm -rf "$tmp"
}
# Fields of a sum made by symvers_sum (call that first, outside $(...), so that it can die).
crcs() { cut -d' ' -f1 "$SUMS/$1.sum"; }
layout() { cut -d' ' -f2 "$SUMS/$1.sum"; }
nonzero() { cut -d' ' -f3 "$SUMS/$1.sum"; }
older() { [[ $1 != "$2" && $(printf '%s\n' "$1" "$2" | sort -V | head -n 1) == "$1" ]]; }
prefer() { # PINNED ABI... -> PINNED first if among the ABIs, then the others in their order
  local pin=$1 x
  shift
  for x in "$@"; do if [[ $x == "$pin" ]]; then echo "$x"; fi; done
  for x in "$@"; do if [[ $x != "$pin" ]]; then echo "$x"; fi; done
}

resolve_roles() {
  local -a v61 v612 v7 desc61 desc612 desc7
  local c p k61="" k61_same="" k61_old="" a="" b="" nomv=""
  mapfile -t v61 < <(served '6\.1\.0-[0-9]+')
  mapfile -t v612 < <(served '6\.12\.[0-9]+\+deb13(\.[0-9]+)?')
  mapfile -t v7 < <(served '([7-9]|[1-9][0-9])\.[0-9.]+\+deb[0-9.]+')
  mapfile -t desc61 < <(printf '%s\n' "${v61[@]}" | sed '/^$/d' | sort -rV)
  mapfile -t desc612 < <(printf '%s\n' "${v612[@]}" | sed '/^$/d' | sort -rV)
  mapfile -t desc7 < <(printf '%s\n' "${v7[@]}" | sed '/^$/d' | sort -rV)
  echo "fetch-kernels: the archive serves 6.1: ${v61[*]:-none}; 6.12: ${v612[*]:-none}; 7+: ${v7[*]:-none}" >&2

  for c in $(prefer 6.1.0-56 "${desc61[@]}"); do
    for p in $(prefer 6.1.0-55 "${desc61[@]}"); do
      [[ $p != "$c" ]] || continue
      symvers_sum "$c"
      symvers_sum "$p"
      if [[ $(crcs "$c") == "$(crcs "$p")" ]]; then k61=$c k61_same=$p; break 2; fi
    done
  done
  [[ -n $k61 ]] || die "no kernel fills role k61/k61_same: no two served 6.1 ABIs (${v61[*]:-none}) have identical CRCs"
  for c in $(prefer 6.1.0-47 "${v61[@]}"); do
    older "$c" "$k61" || continue
    symvers_sum "$c"
    if [[ $(layout "$c") != "$(layout "$k61")" ]]; then k61_old=$c; break; fi
  done
  [[ -n $k61_old ]] || die "no kernel fills role k61_old: no served 6.1 ABI older than $k61 has another module_layout CRC"

  for c in $(prefer 6.12.107+deb13 "${desc612[@]}"); do
    for p in $(prefer 6.12.94+deb13 "${desc612[@]}"); do
      [[ $p != "$c" ]] || continue
      symvers_sum "$c"
      symvers_sum "$p"
      if [[ $(crcs "$c") != "$(crcs "$p")" ]]; then a=$c b=$p; break 2; fi
    done
  done
  [[ -n $a ]] || die "no kernel fills roles k612/k612_old: no two served 6.12 ABIs (${v612[*]:-none}) with different CRCs"
  if older "$b" "$a"; then p=$a a=$b b=$p; fi # a: the older

  for c in "${desc7[@]}"; do
    symvers_sum "$c"
    if [[ $(nonzero "$c") -eq 0 ]]; then nomv=$c; break; fi
  done
  [[ -n $nomv ]] || die "no kernel fills role nomodversions: every served 7.x+ ABI (${v7[*]:-none}) has CRCs"

  {
    echo "# Kernel roles resolved by tests/e2e/fetch-kernels.sh from the archive's lists of $(date -u -r "$STAMP" +%FT%TZ)"
    echo "k61=$k61"
    echo "k61_same=$k61_same"
    echo "k61_old=$k61_old"
    echo "k612=$b"
    echo "k612_old=$a"
    echo "nomodversions=$nomv"
  } >"$ROLES_FILE.tmp"
  mv "$ROLES_FILE.tmp" "$ROLES_FILE"
}

ensure_roles() {
  roles_current && return 0
  ensure_lists
  resolve_roles
}

case $mode in
  role) ensure_roles; role_of "$want_role"; exit 0 ;;
  roles) ensure_roles; grep -E '^[a-z0-9_]+=' "$ROLES_FILE"; exit 0 ;;
esac

if [[ $# -eq 0 ]]; then set -- "${ROLES[@]}"; fi
ABIS=()
for arg in "$@"; do
  [[ $arg != sid ]] || arg=nomodversions
  if is_role "$arg"; then
    ensure_roles # once: then current
    abi=$(role_of "$arg")
    [[ -n $abi ]] || die "role $arg is not in $ROLES_FILE"
    echo "fetch-kernels: role $arg = $abi" >&2
    arg=$abi
  fi
  ABIS+=("$arg")
done
mapfile -t ABIS < <(printf '%s\n' "${ABIS[@]}" | awk '!seen[$0]++')
for abi in "${ABIS[@]}"; do
  fetch_one "$abi"
  if [[ $mode == kbuild ]]; then kbuild_one "$abi"; fi
done
