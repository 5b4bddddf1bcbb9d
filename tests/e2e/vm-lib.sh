# shellcheck shell=bash
# Shared by run-vm.sh and check-vm.sh (sourced): the base of a busybox initramfs and one boot
# of a real kernel under qemu TCG with its serial console captured.
# Env: QEMU (default qemu-system-x86_64), BUSYBOX (default /bin/busybox, must be static).

QEMU=${QEMU:-qemu-system-x86_64}
BUSYBOX=${BUSYBOX:-/bin/busybox}
VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# vm_abi ROLE|ABI: the ABI of a kernel role (fetch-kernels.sh --role), or the ABI as given.
vm_abi() {
  case $1 in
    k61 | k61_same | k61_old | k612 | k612_old | nomodversions) bash "$VM_LIB_DIR/fetch-kernels.sh" --role "$1" ;;
    *) echo "$1" ;;
  esac
}

# vm_base_root ROOT: busybox as /bin/sh, and tryload, the static init_module caller.
vm_base_root() {
  local root=$1
  mkdir -p "$root/bin"
  cp "$BUSYBOX" "$root/bin/busybox"
  ln -s busybox "$root/bin/sh"
  gcc -static -O2 -Wall -o "$root/bin/tryload" "$VM_LIB_DIR/tryload.c"
}

# vm_pack ROOT CPIO: the initramfs.
vm_pack() {
  (cd "$1" && find . | cpio -o -H newc --quiet) >"$2"
}

# vm_boot TAG KDIR CPIO SERIAL TIMEOUT APPEND [QEMU ARG...]: boots KDIR/vmlinuz once, serial
# console to SERIAL and, carriage returns stripped, SERIAL.txt; returns qemu's exit status
# (124 on timeout). The memory fits the initramfs: it is unpacked into the rootfs tmpfs while
# the archive is still there, and that tmpfs may hold half the RAM the archive leaves (1 GiB, or
# three times the archive and 512 MiB; twice failed with "Initramfs unpacking failed: write
# error" at a 650 MiB archive). no_timer_check: under TCG on a busy
# host the timer check can miss its interrupts and panic ("IO-APIC + timer doesn't work").
vm_boot() {
  local tag=$1 kdir=$2 cpio=$3 serial=$4 timeout_s=$5 append=$6
  shift 6
  local start=$SECONDS rc=0 mem
  mem=$(( $(stat -c %s "$cpio") / 1048576 * 3 + 512 ))
  ((mem >= 1024)) || mem=1024
  timeout --kill-after=10 "$timeout_s" "$QEMU" -accel tcg -cpu max -m "$mem" -nographic -no-reboot \
    "$@" -kernel "$kdir/vmlinuz" -initrd "$cpio" \
    -append "console=ttyS0 panic=-1 quiet no_timer_check${append:+ $append}" </dev/null >"$serial" 2>&1 || rc=$?
  tr -d '\r' <"$serial" >"$serial.txt"
  echo "$tag: qemu exited $rc after $((SECONDS - start))s" >&2
  return "$rc"
}

# vm_host_root ROOT KDIR AGENT MODULE...: ROOT becomes a small but real host of the kernel of
# the kernel-cache directory KDIR (fetch-kernels.sh), at the cache's paths: busybox and tryload
# (vm_base_root); AGENT, debug info stripped, at /usr/local/bin/agent with every library it
# loads at the paths ldd names (the dynamic loader included) and the agent's default pci.ids;
# /lib -> usr/lib (usr-merged, as Debian 12 and 13 hosts are); the kernel's module tree with
# all its indexes but only the named MODULEs and their dependencies; its build/source links
# and the headers they point to; the kernel image (its built-in certificates), its config and
# /etc/os-release. Sets VM_KVER and VM_HEADERS (the headers' path in ROOT, "" when none).
# Call it where errexit applies (not after `||` nor in `if`): a failing step ends the caller.
vm_host_root() {
  local root=$1 kdir=$2 agent=$3 lib link moddir image codename version
  shift 3
  mkdir -p "$root"/{bin,proc,sys,dev,run,tmp,etc,usr/lib,usr/local/bin}
  ln -s usr/lib "$root/lib"
  vm_base_root "$root"
  strip --strip-debug -o "$root/usr/local/bin/agent" "$agent"
  ldd "$agent" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  mkdir -p "$root/usr/share/misc"
  cp -L /usr/share/misc/pci.ids "$root/usr/share/misc/pci.ids"

  vm_module_subset "$root" "$kdir" "$@" || return 1
  moddir=$VM_MODDIR
  for link in build source; do
    if [[ -L $kdir/modules/$link ]]; then cp -P "$kdir/modules/$link" "$root/$moddir/$link"; fi
  done
  VM_HEADERS=""
  if [[ -L $kdir/modules/build ]]; then
    VM_HEADERS=$(readlink "$kdir/modules/build")
    [[ $VM_HEADERS == /* ]] || VM_HEADERS="/$moddir/$VM_HEADERS"
    if [[ -d $kdir/root$VM_HEADERS ]]; then
      mkdir -p "$root$(dirname "$VM_HEADERS")"
      cp -a "$kdir/root$VM_HEADERS" "$root$VM_HEADERS"
    fi
  fi
  image=$(realpath --relative-to="$kdir/root" "$(realpath "$kdir/vmlinuz")")
  mkdir -p "$root/$(dirname "$image")"
  cp -L "$kdir/vmlinuz" "$root/$image"
  if [[ -f $kdir/root/boot/config-$VM_KVER ]]; then
    mkdir -p "$root/boot"
    cp -L "$kdir/root/boot/config-$VM_KVER" "$root/boot/"
  fi
  case $VM_KVER in
    6.1.*) codename=bookworm version=12 ;;
    *+deb13*) codename=trixie version=13 ;;
    *) codename=sid version="" ;;
  esac
  cat >"$root/etc/os-release" <<OS
PRETTY_NAME="Debian GNU/Linux ${version:+$version }($codename)"
NAME="Debian GNU/Linux"
${version:+VERSION_ID=\"$version\"
}VERSION_CODENAME=$codename
ID=debian
OS
}

# vm_module_subset ROOT KDIR MODULE...: the kernel's module tree of the kernel-cache directory
# KDIR at its path under ROOT (/lib/modules/<kver>, through ROOT's /lib -> usr/lib when it has
# one): every index (modules.dep & co), but only the named MODULEs and their dependencies from
# modules.dep (a name modules.dep does not have is an error). Sets VM_KVER and VM_MODDIR (the
# tree's path under ROOT, without the leading /).
vm_module_subset() {
  local root=$1 kdir=$2 f moddir rel
  shift 2
  VM_KVER=$(<"$kdir/.done")
  moddir=$(realpath --relative-to="$kdir/root" "$(realpath "$kdir/modules")")
  [[ $moddir != ..* ]] || { echo "vm_module_subset: $kdir/modules is not inside $kdir/root" >&2; return 1; }
  VM_MODDIR=$moddir
  mkdir -p "$root/$moddir"
  for f in "$kdir/modules"/modules.*; do cp -L "$f" "$root/$moddir/"; done
  python3 - "$kdir/modules/modules.dep" "$@" <<'PY' >"$root/.subset"
import os, re, sys
dep_file, names = sys.argv[1], sys.argv[2:]
norm = lambda p: re.sub(r"\.ko(\.(xz|zst|gz))?$", "", os.path.basename(p)).replace("-", "_")
deps = {}
for line in open(dep_file):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
out = set()
for mod, d in deps.items():
    if norm(mod) in names:
        out.add(mod)
        out.update(d)
missing = set(names) - {norm(m) for m in out}
if missing:
    sys.exit("vm_module_subset: not in modules.dep: " + " ".join(sorted(missing)))
print("\n".join(sorted(out)))
PY
  while read -r rel; do
    [[ -n $rel ]] || continue
    mkdir -p "$root/$moddir/$(dirname "$rel")"
    cp -L "$kdir/modules/$rel" "$root/$moddir/$rel"
  done <"$root/.subset"
  rm "$root/.subset"
}
