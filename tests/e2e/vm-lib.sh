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
# (124 on timeout).
vm_boot() {
  local tag=$1 kdir=$2 cpio=$3 serial=$4 timeout_s=$5 append=$6
  shift 6
  local start=$SECONDS rc=0
  timeout --kill-after=10 "$timeout_s" "$QEMU" -accel tcg -cpu max -m 1024 -nographic -no-reboot \
    "$@" -kernel "$kdir/vmlinuz" -initrd "$cpio" \
    -append "console=ttyS0 panic=-1 quiet${append:+ $append}" </dev/null >"$serial" 2>&1 || rc=$?
  tr -d '\r' <"$serial" >"$serial.txt"
  echo "$tag: qemu exited $rc after $((SECONDS - start))s" >&2
  return "$rc"
}
