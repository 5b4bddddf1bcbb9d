# shellcheck shell=bash
# shellcheck disable=SC2034 # vm_args sets the sourcing script's variables
# The frame of the VM scripts (build-vm.sh, check-vm.sh, image-vm.sh, kmod-vm.sh, lifecycle-vm.sh,
# systemd-vm.sh), sourced: their options, the pre-flight checks, the kernels, and the /init of
# tests/e2e/vm/ with the in-VM helper library put into an initramfs root.
# Sets REPO, CACHE (exported as AGENT_KERNEL_CACHE), FIXTURES, KMOD_SRC, NIC_BDF; sources vm-lib.sh.

VM_SCRIPT=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$REPO/tests/e2e/vm-lib.sh"
FIXTURES=$REPO/tests/fixtures
KMOD_SRC=$FIXTURES/kmod-src # the test driver set
# qemu's e1000 NIC (8086:100e): the device every VM test drives
NIC_BDF=0000:00:03.0

vm_die() { echo "${VM_SCRIPT%.sh}: $*" >&2; exit 2; }

# vm_args LETTERS ARGS...: the script's command line. LETTERS: the options it takes of
#   a  -a AGENT  the agent binary ($AGENT, else build/agent/agent of this repository) -> agent
#   p  -p ABI    the bundle's build, the target's kABI (k61_same)                      -> prev
#   c  -c ABI    a build of another kABI (k61_old)                                     -> old
#   i  -i IMAGE  an image already built                                                -> image
#   l  -l LOG    keep the whole serial console there                                   -> log
#   s  -s        short output                                                          -> short=1
# and at most one operand, the target kernel (a kernel role or ABI, default k61) -> abi.
vm_args() {
  local letters=$1 optstring="" usage="usage: $VM_SCRIPT" opt l
  shift
  for l in s a p c i l; do
    [[ $letters == *"$l"* ]] || continue
    case $l in
      s) optstring+=s usage+=" [-s]" ;;
      a) optstring+=a: usage+=" [-a AGENT]" ;;
      p | c) optstring+=$l: usage+=" [-$l ABI]" ;;
      i) optstring+=i: usage+=" [-i IMAGE]" ;;
      l) optstring+=l: usage+=" [-l LOG]" ;;
    esac
  done
  usage+=" [ABI]"
  agent=${AGENT:-$REPO/build/agent/agent} prev=k61_same old=k61_old image="" log="" short=0
  OPTIND=1
  while getopts "$optstring" opt; do
    case $opt in
      s) short=1 ;;
      a) agent=$OPTARG ;;
      p) prev=$OPTARG ;;
      c) old=$OPTARG ;;
      i) image=$OPTARG ;;
      l) log=$OPTARG ;;
      *) vm_die "$usage" ;;
    esac
  done
  shift $((OPTIND - 1))
  [[ $# -le 1 ]] || vm_die "$usage"
  abi=${1:-k61}
}

# vm_need WHAT...: the tools the script needs, else a setup error naming the fix:
# agent (made absolute), qemu, busybox (static), gcc, pci.ids, podman, crun, pyyaml.
vm_need() {
  local what
  for what; do
    case $what in
      agent)
        [[ -x $agent ]] || vm_die "no agent binary at $agent (build it, or pass -a AGENT)"
        agent=$(realpath "$agent") ;;
      qemu) command -v "$QEMU" >/dev/null || vm_die "no $QEMU" ;;
      busybox)
        [[ -x $BUSYBOX ]] || vm_die "no busybox at $BUSYBOX (apt-get install busybox-static)"
        ! ldd "$BUSYBOX" >/dev/null 2>&1 || vm_die "$BUSYBOX is not static (apt-get install busybox-static)" ;;
      gcc) command -v gcc >/dev/null || vm_die "no gcc (to build tryload)" ;;
      pci.ids) [[ -f /usr/share/misc/pci.ids ]] || vm_die "no /usr/share/misc/pci.ids (apt-get install pci.ids)" ;;
      podman | crun) command -v "$what" >/dev/null || vm_die "no $what (tests/setup.sh installs it)" ;;
      pyyaml) python3 -c 'import yaml' 2>/dev/null || vm_die "no PyYAML (python3-yaml)" ;;
      *) vm_die "vm_need: unknown $what" ;;
    esac
  done
}

# vm_root WHY: the script must run as root
vm_root() { [[ $(id -u) -eq 0 ]] || vm_die "needs root ($1)"; }

# vm_kernels [--kbuild] VAR...: fetches the kernels the variables name (roles or ABIs; with
# --kbuild what building against them needs too) into the cache and sets each to its ABI.
vm_kernels() {
  local kbuild=() name
  [[ $1 != --kbuild ]] || { kbuild=(--kbuild); shift; }
  local -a want=()
  for name; do want+=("${!name}"); done
  bash "$REPO/tests/e2e/fetch-kernels.sh" "${kbuild[@]}" "${want[@]}" >&2 ||
    vm_die "fetch-kernels.sh ${kbuild[*]}${kbuild:+ }${want[*]} failed"
  for name; do
    local -n ref=$name
    ref=$(vm_abi "$ref") || vm_die "no kernel for $ref"
    unset -n ref
  done
}

# vm_other_kabi: -c must name another kABI than the target (and -p)
vm_other_kabi() {
  [[ $old != "$abi" && $old != "${1:-$abi}" ]] || vm_die "-c $old must be another kABI than the target${1:+ and -p}"
}

# vm_bundle ABI DIR [--foreign]: the test driver set built for ABI into DIR (build-bundle.sh)
vm_bundle() { bash "$KMOD_SRC/build-bundle.sh" "$@" >/dev/null || vm_die "build-bundle.sh $* failed"; }

# vm_file_id FILE: a module file's build id
vm_file_id() { readelf -n "$1" | awk '/Build ID:/ { print $3 }'; }

# vm_e2e ROOT [VAR=VALUE...]: the in-VM helper library at ROOT/e2e/lib.sh and the host's values
# for it at ROOT/e2e/env.sh (NIC and the VARs).
vm_e2e() {
  local root=$1 kv
  shift
  mkdir -p "$root/e2e"
  cp "$REPO/tests/e2e/vm/lib.sh" "$root/e2e/lib.sh"
  for kv in "NIC=$NIC_BDF" "$@"; do
    [[ $kv == [A-Z]*=* && ${kv#*=} != *"'"* ]] || vm_die "vm_e2e: cannot pass $kv"
    printf "%s='%s'\n" "${kv%%=*}" "${kv#*=}"
  done >"$root/e2e/env.sh"
}

# vm_init ROOT NAME [VAR=VALUE...]: tests/e2e/vm/NAME-init.sh as ROOT's /init, with vm_e2e's files
vm_init() {
  local root=$1 name=$2
  shift 2
  vm_e2e "$root" "$@"
  cp "$REPO/tests/e2e/vm/$name-init.sh" "$root/init"
  chmod +x "$root/init"
}

# vm_run CPIO TIMEOUT APPEND NOTE [QEMU ARG...]: boots the kernel of $kdir ($kver) once on CPIO
# with qemu's e1000 NIC, for AGENT_E2E_TIMEOUT seconds, else TIMEOUT; APPEND: more of the kernel's
# command line; NOTE: said with what is booted. Sets SERIAL (the console, carriage returns
# stripped; copied to -l's LOG) and VM_SECONDS (the boot's wall time).
vm_run() {
  local cpio=$1 timeout_s=${AGENT_E2E_TIMEOUT:-$2} append=$3 note=$4 t=$SECONDS
  shift 4
  echo "${VM_SCRIPT%.sh}: booting ${kver:?} with a $(($(stat -c %s "$cpio") / 1048576)) MiB initramfs" \
    "(${note:+$note; }timeout ${timeout_s}s)" >&2
  vm_boot "${VM_SCRIPT%.sh}" "${kdir:?}" "$cpio" "${work:?}/serial.log" "$timeout_s" "$append" "$@" \
    -nic user,model=e1000 || true
  VM_SECONDS=$((SECONDS - t))
  SERIAL=$work/serial.log.txt
  [[ -z $log ]] || cp "$SERIAL" "$log"
}
