#!/usr/bin/env bash
# The kernel-agreement suite: for every case, the real kernel (booted under qemu, once per
# kernel and command line, see run-vm.sh) says what init_module returns, and the agent's
# prediction
#   agent kabi check --json --symvers <kernel>/Module.symvers --kernel-modules <kernel>/modules M...
# must agree for each module M of the case: same errno, verdict "loadable" iff the errno is 0,
# exit status 0 iff every module of the case loads.
#
# A case is one module, or a group of modules inserted in that order in one VM (a dependency
# shipped with its user: the VM does not load the target's in-tree copy of it; the agent checks
# the group in one call and lists each module in modules[]). A target is a kernel ABI, or
# ABI@VARIANT for another boot with another command line (VARIANT sig_enforce:
# module.sig_enforce=1, the agent gets --sig-enforce; lockdown: lockdown=integrity, the agent
# gets --lockdown; blacklist: module_blacklist=i915,xe, nomodeset: nomodeset, the agent gets the
# same words as --kernel-cmdline; the boot's answers are stored only if its log shows the kernel
# took it). A case may pass parameters to its module (init_module's third argument, as modprobe
# passes a module's options): the agent gets them as <module>.<param>= words of --kernel-cmdline.
# Kernel-only cases (facts the offline check cannot know, e.g. a module already live) compare
# the kernel with a recorded errno. A case may run without some in-tree modules: the VM does
# not load them, the agent gets a copy of the target's tree without their files (depmod run
# again), as on a node where the package that ships them is not installed. A case may run with
# the target's in-tree modules of some names loaded first by the VM (preload=): the agent gets
# them as --loaded, as `agent check` reads them from /proc/modules; or as the last of its boot
# with kernel.modules_disabled=1 (the agent gets --modules-disabled).
#
# Usage: agreement.sh [--kernel-only] [AGENT]
#   AGENT          the agent binary (default $AGENT, else build/agent/agent of this repository)
#   --kernel-only  only ask the kernels (no agent needed) and print their answers
# Env: AGENT_KERNEL_CACHE   kernel cache (fetch-kernels.sh); VM results are cached under
#                           its e2e-results/harness-<sha256 prefix of the harness>/<target>/<key>
#                           (key: sha256 of the module, for a
#                           group's N-th module sha256 of "<sha256 of each module> N"), each
#                           recording the sha256 of the kernel image and of the harness
#                           (tryload.c, run-vm.sh, vm-lib.sh) it was asked with: reused only
#                           when both are today's; case files are kept under
#                           e2e-cases/<abi>/ for reruns by hand
#      AGENT_E2E_FRESH=1    ignore cached VM results (boot every target again)
#      AGENT_E2E_POLICY     passed as --policy to the agent when set (strict|upstream)
#      AGENT_E2E_JOBS       jobs at a time (default 2): the boots, one after the other, are
#                           one job, each agent run another
# The target's kernel image is passed as --vmlinuz (or --kernel-image) when the agent's
# `kabi check --help` lists such an option.
# Output: one line per module of a case "PASS|FAIL <target>/<case>[/N] kernel=... agent=..."
# (on FAIL followed by the kernel's messages and the agent's reasons, indented), then
# "N passed, M failed".
# Exit: 0 all agree, 1 some disagree (or a kernel gave no answer), 2 bad setup.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE

die() { echo "agreement: $*" >&2; exit 2; }

kernel_only=0
if [[ ${1:-} == --kernel-only ]]; then kernel_only=1; shift; fi
[[ $# -le 1 ]] || die "usage: agreement.sh [--kernel-only] [AGENT]"
AGENT=${1:-${AGENT:-$REPO/build/agent/agent}}
if [[ $kernel_only -eq 0 ]]; then
  [[ -x $AGENT ]] || die "no agent binary at $AGENT (build it, or pass its path, or --kernel-only)"
fi

# The kernels by role (fetch-kernels.sh resolves them from the archive; the ABIs name the
# cases and targets): K61 and K61_PREV have identical CRCs, K61_OLD is older with other CRCs
# (module_layout too), K612 and K612_OLD are two 6.12 ABIs with different CRCs (the newer and
# the older), K7 is built without MODVERSIONS (all CRCs 0, no __versions in its modules).
bash "$HERE/fetch-kernels.sh" >&2 || die "fetch-kernels.sh failed"
role() { bash "$HERE/fetch-kernels.sh" --role "$1" || die "no kernel for role $1"; }
K61=$(role k61) K61_PREV=$(role k61_same) K61_OLD=$(role k61_old)
K612=$(role k612) K612_OLD=$(role k612_old) K7=$(role nomodversions)
echo "agreement: k61=$K61 k61_same=$K61_PREV k61_old=$K61_OLD k612=$K612 k612_old=$K612_OLD" \
  "nomodversions=$K7" >&2

# What an answer depends on besides the module: the kernel image, and the harness that boots it
# and asks it (the VM's init and tryload). An answer recorded with others is asked again.
harness=$(cat "$HERE/tryload.c" "$HERE/run-vm.sh" "$HERE/vm-lib.sh" | sha256sum | cut -d' ' -f1)
declare -A image_sha=()
for abi in "$K61" "$K61_PREV" "$K61_OLD" "$K612" "$K612_OLD" "$K7"; do
  [[ -n ${image_sha[$abi]:-} ]] && continue
  image_sha[$abi]=$(sha256sum <"$CACHE/$abi/vmlinuz" | cut -d' ' -f1) || die "cannot read $CACHE/$abi/vmlinuz"
done
answer_current() { # FILE ABI: the recorded answer is this kernel image's and this harness's
  [[ -f $1 ]] && [[ $(sed -n 2,3p "$1") == "kernel-image ${image_sha[$2]}"$'\n'"harness $harness" ]]
}

# Target variants: the extra kernel command line, the agent's extra options.
variant_append() {
  case $1 in
    *@sig_enforce) echo "module.sig_enforce=1" ;;
    *@lockdown) echo "lockdown=integrity" ;;
    *@blacklist) echo "module_blacklist=i915,xe" ;;
    *@nomodeset) echo "nomodeset" ;;
    *@*) die "unknown variant in target $1" ;;
  esac
}
variant_agent_args() {
  case $1 in
    *@sig_enforce) echo "--sig-enforce" ;;
    *@lockdown) echo "--lockdown" ;;
  esac
}
variant_cmdline() { # TARGET: the kernel command line words the agent is told of
  case $1 in
    *@blacklist | *@nomodeset) variant_append "$1" ;;
  esac
}
variant_booted() { # TARGET VM_LOG: did the boot really get the variant? (else no answers)
  case $1 in
    *@lockdown) grep -q 'E2E LOCKDOWN .*\[integrity\]' "$2" ;;
    *@sig_enforce) grep -qE 'E2E SIG_ENFORCE Y$' "$2" ;;
    # /proc/cmdline as the booted kernel shows it
    *@blacklist) grep -qE 'E2E BEGIN .* module_blacklist=i915,xe( |$)' "$2" ;;
    *@nomodeset) grep -qE 'E2E BEGIN .* nomodeset( |$)' "$2" ;;
  esac
}

mod() { # mod ABI NAME -> path of the in-tree module NAME (.ko or .ko.xz) of that kernel
  local rel
  rel=$(grep -m1 -oE "^([^:]*/)?$2\.ko(\.(xz|zst|gz))?:" "$CACHE/$1/modules/modules.dep") \
    || die "no $2 module in $CACHE/$1"
  echo "$CACHE/$1/modules/${rel%:}"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
cases="$work/cases"   # lines: TARGET CASE PATH [PATH...] (more than one path: a group)
expect="$work/expect" # kernel-only cases, lines: TARGET CASE ERRNO[,ERRNO...] (one per module)
without="$work/without" # cases without some in-tree modules, lines: TARGET CASE NAME[,NAME...]
params="$work/params" # cases with module parameters, lines: TARGET CASE MODULE WORD...
fields="$work/fields" # cases with harness fields, lines: TARGET CASE FIELD (see add_field)
: >"$fields"
: >"$cases"
: >"$params"
: >"$expect"
: >"$without"
add() { echo "$*" >>"$cases"; }
add_without() { # TARGET CASE NAME[,NAME...] PATH...
  echo "$1 $2 $3" >>"$without"
  add "$1" "$2" "${@:4}"
}
without_of() { # TARGET CASE -> its NAME[,NAME...], or nothing
  awk -v t="$1" -v c="$2" '$1 == t && $2 == c { print $3 }' "$without"
}
add_params() { # TARGET CASE MODULE "WORD..." PATH: PATH inserted with those parameters
  echo "$1 $2 $3 $4" >>"$params"
  add "$1" "$2" "$5"
}
params_of() { # TARGET CASE -> its parameter words, or nothing
  awk -v t="$1" -v c="$2" '$1 == t && $2 == c { $1 = $2 = $3 = ""; sub(/^ +/, ""); print }' "$params"
}
params_cmdline() { # TARGET CASE -> its parameters as MODULE.WORD words, or nothing
  awk -v t="$1" -v c="$2" '$1 == t && $2 == c { for (i = 4; i <= NF; i++) printf "%s%s.%s", (i > 4 ? " " : ""), $3, $i }' "$params"
}
# TARGET CASE FIELD PATH...: FIELD on the case's manifest lines, and in its key. preload=NAME[,NAME...]:
# the VM loads the target's in-tree NAME first, the agent gets --loaded NAME; modules_disabled:
# the VM sets kernel.modules_disabled=1 before it (last of its boot), the agent gets
# --modules-disabled; nocap: the VM inserts it without CAP_SYS_MODULE, the agent gets
# --no-cap-sys-module
add_field() {
  [[ $3 == preload=?* || $3 == modules_disabled || $3 == nocap ]] || die "unknown field $3 of $1/$2"
  echo "$1 $2 $3" >>"$fields"
  add "$1" "$2" "${@:4}"
}
fields_of() { # TARGET CASE -> its fields, space separated
  awk -v t="$1" -v c="$2" '$1 == t && $2 == c { printf "%s ", $3 }' "$fields"
}
add_kernel_only() { # TARGET CASE ERRNOS PATH...
  echo "$1 $2 $3" >>"$expect"
  add "$1" "$2" "${@:4}"
}

# Cross-kernel cases: in-tree modules of one ABI on another kernel.
add "$K61" "i915-own" "$(mod "$K61" i915)"
add "$K61" "i915-from-$K61_PREV" "$(mod "$K61_PREV" i915)"
add "$K61" "i915-from-$K61_OLD" "$(mod "$K61_OLD" i915)"
add "$K612" "xe-own" "$(mod "$K612" xe)"
add "$K612" "i915-from-$K612_OLD" "$(mod "$K612_OLD" i915)"
add "$K612" "xe-from-$K612_OLD" "$(mod "$K612_OLD" xe)"
add "$K612_OLD" "i915-from-$K612" "$(mod "$K612" i915)"
add "$K612_OLD" "xe-from-$K612" "$(mod "$K612" xe)"
add "$K7" "i915-own" "$(mod "$K7" i915)"
add "$K7" "xe-own" "$(mod "$K7" xe)"
add "$K7" "xe-from-$K612" "$(mod "$K612" xe)" # built with modversions: vermagic differs

# Rule cases: one edit each of a module (mkcases.py), on the target kernel. A case mkcases.py
# finds not applicable is an error unless the caller names it in NA_OK (comma separated: the
# cases that cannot apply to that module, e.g. the CRC cases without MODVERSIONS).
make_cases() { # TARGET_ABI SOURCE_ABI MODULE PREFIX [mkcases.py options...] -> mkcases.out
  local target=$1 source=$2 module=$3 prefix=$4 dir="$CACHE/e2e-cases/$1" na name na_ok=${NA_OK:-}
  shift 4
  mkdir -p "$dir"
  python3 "$HERE/mkcases.py" --prefix "$prefix" --symvers "$CACHE/$target/Module.symvers" "$@" \
    "$(mod "$source" "$module")" "$dir" 2>"$work/mkcases.err" >"$work/mkcases.out" \
    || { cat "$work/mkcases.err" >&2; die "mkcases.py failed for $module of $source"; }
  na=$(sed -n "s/^mkcases: ${prefix//./\\.}\([a-z_0-9]*\) not applicable: .*/\1/p" "$work/mkcases.err")
  for name in $na; do
    [[ ,$na_ok, == *",$name,"* ]] \
      || die "case $prefix$name does not apply to $module of $source: $(grep -m1 "not applicable" "$work/mkcases.err")"
  done
  for name in ${na_ok//,/ }; do # and what should not apply does not
    grep -qx "$name" <<<"$na" || die "case $prefix$name applies to $module of $source, expected not to"
  done
  [[ -s $work/mkcases.out ]] || die "mkcases.py made no case of $module of $source ($prefix)"
}
one_case() { # the single case make_cases just made: its output file
  [[ $(wc -l <"$work/mkcases.out") -eq 1 ]] || die "expected one case from mkcases.py: $(cat "$work/mkcases.out")"
  cut -f3 "$work/mkcases.out"
}
rule_cases() { # TARGET_ABI SOURCE_ABI MODULE PREFIX [mkcases.py options...]
  local name out
  make_cases "$@"
  while IFS=$'\t' read -r name _ out; do add "$1" "$name" "$out"; done <"$work/mkcases.out"
}
# versions_fake[_release] add a __versions table: not for a module that has one.
NA_OK=versions_fake,versions_fake_release rule_cases "$K61" "$K61" i915 i915-
NA_OK=versions_fake,versions_fake_release rule_cases "$K612" "$K612" xe xe-
# Without MODVERSIONS the modules have no __versions: the CRC cases do not apply (mkcases.py
# says so); versions_fake[_release] give one a __versions table the kernel must ignore.
NA_OK=crc,signed_crc,versions_noalloc,versions_noalloc_release,versions_missing,module_layout \
  rule_cases "$K7" "$K7" xe xe-
# Signed modules edited with the signature kept: a key the kernel trusts makes the mismatch
# fatal (EKEYREJECTED); an unknown key is not checked at all (no signed attributes in the
# PKCS#7), the module counts as unsigned and the other rules decide.
rule_cases "$K61" "$K61" i915 i915-signed- --keep-signature --only vermagic_release
rule_cases "$K61" "$K61_PREV" i915 "i915-from-$K61_PREV-signed-" --keep-signature \
  --only vermagic_release,crc
rule_cases "$K612" "$K612" xe xe-signed- --keep-signature --only vermagic_release
rule_cases "$K7" "$K7" xe xe-signed- --keep-signature --only vermagic_release

# Exports between shipped modules: K61_PREV's drm_display_helper (which exports drm_dp_*
# that i915 uses) shipped with K61_PREV's i915, instead of the target's in-tree copy; then the
# same with one exported CRC (of a symbol i915 imports) changed in the helper's __kcrctab:
# the helper loads, i915 (built against the original CRC) is refused.
i915_prev=$(mod "$K61_PREV" i915) dh_prev=$(mod "$K61_PREV" drm_display_helper)
add "$K61" "drm_display_helper+i915-from-$K61_PREV" "$dh_prev" "$i915_prev"
make_cases "$K61" "$K61_PREV" drm_display_helper "drm_display_helper-from-$K61_PREV-" \
  --only export_crc --user "$i915_prev"
add "$K61" "drm_display_helper-export_crc+i915-from-$K61_PREV" "$(one_case)" "$i915_prev"
# The same module twice in one set (a .ko and a .ko.xz copy, so that the agent's report tells
# them apart by path): the second finds the first live (EEXIST).
copy_of() { # SRC DEST: DEST made once from SRC, compressed or decompressed by its suffix
  [[ -f $2 ]] && return 0
  mkdir -p "$(dirname "$2")"
  case $1:$2 in
    *.xz:*.xz) cp "$1" "$2.tmp" ;;
    *.xz:*) xz -dc "$1" >"$2.tmp" ;;
    *:*.xz) xz -T1 -3 -c "$1" >"$2.tmp" ;;
    *) cp "$1" "$2.tmp" ;;
  esac || die "cannot make $2"
  mv "$2.tmp" "$2"
}
copy_of "$(mod "$K61" i915)" "$CACHE/e2e-cases/$K61/i915-own.ko.xz"
add "$K61" "i915-own-twice" "$(mod "$K61" i915)" "$CACHE/e2e-cases/$K61/i915-own.ko.xz"
copy_of "$(mod "$K612" xe)" "$CACHE/e2e-cases/$K612/xe-own.ko"
add "$K612" "xe-own-twice" "$(mod "$K612" xe)" "$CACHE/e2e-cases/$K612/xe-own.ko"

# A signature kept but damaged: the PKCS#7 blob unparseable (EBADMSG: fatal even without
# sig_enforce), or struct module_signature's id_type not PKCS#7 (ENOPKG: as if unsigned).
rule_cases "$K61" "$K61" i915 i915- --keep-signature --only sig_malformed,sig_unsupported
# The dependency refused: K61_PREV's drm_display_helper with its module_layout CRC changed
# (ENOEXEC), then K61_PREV's i915: the VM loads no in-tree drm_display_helper, so i915's
# drm_dp_* are unknown symbols (ENOENT).
make_cases "$K61" "$K61_PREV" drm_display_helper "drm_display_helper-from-$K61_PREV-" \
  --only module_layout
add "$K61" "drm_display_helper-module_layout+i915-from-$K61_PREV" "$(one_case)" "$i915_prev"

# module.sig_enforce=1: the kernel's own signature (0), none (EKEYREJECTED), another kernel's
# key (EKEYREJECTED: "Loading of module with unavailable key is rejected").
add "$K61@sig_enforce" "i915-own" "$(mod "$K61" i915)"
add "$K61@sig_enforce" "i915-stripped" "$CACHE/e2e-cases/$K61/i915-stripped.ko"
add "$K61@sig_enforce" "i915-from-$K61_PREV" "$i915_prev"
add "$K61@sig_enforce" "i915-sig_unsupported" "$CACHE/e2e-cases/$K61/i915-sig_unsupported.ko"

# lockdown=integrity (the boot must show [integrity] in /sys/kernel/security/lockdown): what
# sig_enforce would reject is EPERM instead ("Lockdown: ...: unsigned module loading is
# restricted"), a signature the kernel trusts still loads.
add "$K61@lockdown" "i915-own" "$(mod "$K61" i915)"
add "$K61@lockdown" "i915-stripped" "$CACHE/e2e-cases/$K61/i915-stripped.ko"
add "$K61@lockdown" "i915-sig_unsupported" "$CACHE/e2e-cases/$K61/i915-sig_unsupported.ko"
add "$K61@lockdown" "i915-from-$K61_PREV" "$i915_prev"

# A dependency missing from the tree: the kernel's own i915 / xe on a tree without
# drm_display_helper (whose drm_dp_* they import) - "Unknown symbol", ENOENT; the agent sees
# the symbols in Module.symvers but no module to provide them.
add_without "$K61" "i915-own-without-drm_display_helper" drm_display_helper "$(mod "$K61" i915)"
add_without "$K612" "xe-own-without-drm_display_helper" drm_display_helper "$(mod "$K612" xe)"

# elf_validity_check() and friends, in the kernel's order: a signature trailer whose length
# leaves no module (EBADMSG before its non-PKCS#7 type is looked at), no vermagic (a forced
# load, tainted), a second SHT_SYMTAB (6.1 uses the first, 6.4+ refuse), another machine and a
# wrong e_shentsize (ENOEXEC).
rule_cases "$K61" "$K61" i915 i915- --only sig_oversized,no_vermagic,symtab_twice,machine,shentsize
rule_cases "$K612" "$K612" xe xe- --only sig_oversized,no_vermagic,symtab_twice,machine,shentsize

# Duplicate exports (complete_formation -> verify_exported_symbols, ENOEXEC): crc8 with one
# exported name overwritten in __ksymtab_strings by kfree, which vmlinux exports ("owned by
# kernel"); the in-tree drm_display_helper, then a copy of it renamed drm_dh_copy (the same
# exports): the second is refused naming the first. A built-in's name (mod_sysfs_init,
# EINVAL): crc-itu-t (no dependencies, exports nobody else loads) renamed i8042, built in with
# parameters on every Debian kernel (/sys/module/i8042). Before this_module_size: 6.1 unloads
# nothing after that one.
for abi in "$K61" "$K612" "$K7"; do
  make_cases "$abi" "$abi" crc8 crc8- --only export_vmlinux
  add "$abi" "crc8-export_vmlinux" "$(one_case)"
  make_cases "$abi" "$abi" drm_display_helper drm_display_helper- --only renamed --name drm_dh_copy
  add "$abi" "drm_display_helper+drm_dh_copy" "$(mod "$abi" drm_display_helper)" "$(one_case)"
  make_cases "$abi" "$abi" crc-itu-t crc-itu-t- --only renamed --name i8042
  add "$abi" "crc-itu-t-renamed-i8042" "$(one_case)"
done

# A proprietary provider (inherit_taint): crc-itu-t with its licence 'MIT' (it imports
# nothing, so it loads, tainted), then the kernel's own omfs, which imports crc_itu_t and the
# GPL-only init_user_ns: after a GPL-only symbol the proprietary one is ENOENT; before any, omfs
# inherits the taint and its GPL-only symbols are unknown (ENOENT) - the symbol order decides.
for abi in "$K61" "$K612" "$K7"; do
  make_cases "$abi" "$abi" crc-itu-t crc-itu-t- --only license
  add "$abi" "crc-itu-t-license+omfs-own" "$(one_case)" "$(mod "$abi" omfs)"
done
# The inheriting path: crc16 licensed 'MIT', then a user whose first symbol from it comes before
# any GPL-only one (mkiss on 6.x: "module uses symbols crc16 from proprietary module crc16,
# inheriting taint.", then its GPL-only symbols are unknown, ENOENT; 7.2's w1_ds2406).
for abi in "$K61" "$K612" "$K7"; do
  make_cases "$abi" "$abi" crc16 crc16- --only license
  user=mkiss
  [[ $abi == "$K7" ]] && user=w1_ds2406
  add "$abi" "crc16-license+$user-own" "$(one_case)" "$(mod "$abi" "$user")"
done

# 7.x module-load semantics (docs/kernel-load-checks.md G1, G2, H9). G1: crc8 (exports) with its
# __kflagstab renamed away: 7.2 "no flags for exported symbols" (ENOEXEC). H9: autofs4 uses
# __kernel_write, exported to namespace module:autofs4 (EXPORT_SYMBOL_FOR_MODULES): the kernel's
# own autofs4 needs no import_ns (0), the same renamed autofs5 is refused like any unimported
# namespace (EINVAL). G2: xe with two of its import_ns=PWM entries made one
# import_ns=module:xe (PWM still imported): 7.2 refuses the import (EPERM), 6.12 takes it as an
# ordinary namespace (0).
make_cases "$K7" "$K7" crc8 crc8- --only no_kflagstab
add "$K7" "crc8-no_kflagstab" "$(one_case)"
add "$K7" "autofs4-own" "$(mod "$K7" autofs4)"
make_cases "$K7" "$K7" autofs4 autofs4- --only renamed --name autofs5
add "$K7" "autofs4-renamed-autofs5" "$(one_case)"
rule_cases "$K612" "$K612" xe xe- --only import_ns_module
rule_cases "$K7" "$K7" xe xe- --only import_ns_module

# Signatures on every generation (6.1's answers alone proved these before): a module signed
# again by `openssl cms -sign` with a test key the kernels do not know, without signed
# attributes (as sign-file: an unknown key, a taint) and with them (pkcs7_verify: EKEYREJECTED
# whatever the key); a kept signature damaged (unparseable, not PKCS#7, non-zero params). On
# k7 also the ELF checks k61/k612 prove above. The test key is made once per kernel cache, so
# that the cases (and their cached answers) stay the same bytes.
signkey="$CACHE/e2e-cases/cms-test-key.pem" signcert="$CACHE/e2e-cases/cms-test-cert.pem"
if [[ ! -f $signcert ]]; then
  mkdir -p "$CACHE/e2e-cases"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$signkey.tmp" -out "$signcert.tmp" -days 36500 \
    -subj "/CN=agent e2e cms test key" 2>"$work/openssl.err" || die "cannot make a test key: $(cat "$work/openssl.err")"
  mv "$signkey.tmp" "$signkey" && mv "$signcert.tmp" "$signcert"
fi
sign=(--sign-key "$signkey" --sign-cert "$signcert")
rule_cases "$K61" "$K61" i915 i915- \
  --only sig_cms_noattr,sig_cms_authattrs,sig_cms_econtent,sig_cms_econtent_keyid,sig_cms_econtent_attrs,sig_cms_econtent_other "${sign[@]}"
rule_cases "$K612" "$K612" xe xe- \
  --only sig_cms_noattr,sig_cms_authattrs,sig_cms_econtent,sig_cms_econtent_keyid,sig_cms_econtent_attrs,sig_cms_econtent_other "${sign[@]}"
rule_cases "$K7" "$K7" xe xe- \
  --only sig_cms_noattr,sig_cms_authattrs,sig_cms_econtent,sig_cms_econtent_keyid,sig_cms_econtent_attrs,sig_cms_econtent_other "${sign[@]}"
rule_cases "$K61" "$K61" i915 i915- --keep-signature --only sig_params
rule_cases "$K612" "$K612" xe xe- --keep-signature --only sig_malformed,sig_unsupported,sig_params
rule_cases "$K7" "$K7" xe xe- --keep-signature --only sig_malformed,sig_unsupported,sig_params
rule_cases "$K7" "$K7" xe xe- --only sig_oversized,no_vermagic,symtab_twice,machine,shentsize
# module_layout without a __versions entry (Debian's patch: ENOEXEC), and two failing symbols
# with different errnos: the last one in .symtab decides (ENOENT, then EINVAL).
rule_cases "$K61" "$K61" i915 i915- --only module_layout_missing,undef_last_enoent,undef_last_einval
rule_cases "$K612" "$K612" xe xe- --only module_layout_missing,undef_last_enoent,undef_last_einval
# Enforced and lockdown on 6.12 and 7.2: the own module (0), unsigned, not PKCS#7 and an
# unknown key (EKEYREJECTED enforced, EPERM under lockdown).
for vabi in "$K612" "$K7"; do
  for variant in sig_enforce lockdown; do
    add "$vabi@$variant" "xe-own" "$(mod "$vabi" xe)"
    for c in stripped sig_unsupported sig_cms_noattr; do
      add "$vabi@$variant" "xe-$c" "$CACHE/e2e-cases/$vabi/xe-$c.ko"
    done
  done
done
# Files that are no loadable module, and what the ELF validity checks (6.1 elf_validity_check +
# setup_load_info; 6.12/7.2 elf_validity_cache_copy), module_enforce_rwx_sections and
# simplify_symbols refuse in them (ENOEXEC), on each generation. modinfo_twice loads on 6.1 (it
# sees SHF_ALLOC sections only), modinfo_noalloc only from 6.4 (6.1 ignores that .modinfo: no
# licence, GPL-only symbols unknown), strtab_lead only before 7.x. this_module_nobits is not
# asked of 6.1, which has no such check (its struct module would be the zeroed NOBITS copy).
elf_cases=elf_magic,elf_dyn,truncated,section0,shname_range,modinfo_twice,modinfo_noalloc,write_exec
elf_cases+=,common_symbol,shndx_range,strtab_link,strtab_lead
rule_cases "$K61" "$K61" i915 i915- --only "$elf_cases"
rule_cases "$K612" "$K612" xe xe- --only "$elf_cases,this_module_nobits"
rule_cases "$K7" "$K7" xe xe- --only "$elf_cases,this_module_nobits"
# Relocations (apply_relocations, after the symbols): a type x86-64 does not apply, a target
# that is not zero, a REL section, an R_X86_64_32 of the module's own address (overflow
# wherever it is placed): ENOEXEC on each generation.
reloc_cases=reloc_type,reloc_nonzero,reloc_rel,reloc_overflow
rule_cases "$K61" "$K61" i915 i915- --only "$reloc_cases"
rule_cases "$K612" "$K612" xe xe- --only "$reloc_cases"
rule_cases "$K7" "$K7" xe xe- --only "$reloc_cases"
# The rest of rows C4, C7, C9-C11, one field of the file each: the section name table out of
# the file, its index, type (6.4+), empty, unterminated, a non-SHF_ALLOC section's name index
# (6.4+; 6.1 checks SHF_ALLOC ones only); .gnu.linkonce.this_module not SHF_ALLOC, missing, or a
# second one without SHF_ALLOC (6.4+; 6.1 finds the SHF_ALLOC one and loads); no SHT_SYMTAB; the
# symbol string table not SHT_STRTAB (6.4+); an SHF_ALLOC section named __version_ext_crcs
# without __version_ext_names (refused from 6.14 whatever MODVERSIONS says: the check has no
# #ifdef; older kernels ignore both). 7.2 only (older kernels read past the table, not asked):
# the symbol string table empty or unterminated, a symbol name out of it, fewer extended version
# names than CRCs.
elf_variants=shstrtab_range,shstrndx_range,shstrtab_type,shstrtab_empty,shstrtab_unterminated
elf_variants+=,shname_noalloc,this_module_noalloc,this_module_missing,this_module_twice,symtab_none
elf_variants+=,strtab_type,ext_crcs_only
rule_cases "$K61" "$K61" i915 i915- --only "$elf_variants"
rule_cases "$K612" "$K612" xe xe- --only "$elf_variants"
rule_cases "$K7" "$K7" xe xe- \
  --only "$elf_variants,strtab_empty,strtab_unterminated,symbol_name_range,ext_names_short"
# A module of the same name already live (D5): the VM loads the target's in-tree crc8 first
# (preload=), then the same file again: EEXIST (add_unformed_module; 6.4+ already in
# early_mod_check); the agent is told crc8 is loaded (--loaded, what `agent check` reads from
# /proc/modules). kernel.modules_disabled=1 (A1): the same file, last of the boot, EPERM from
# may_init_module before anything else. No CAP_SYS_MODULE (A1): the kernel's own crc8,
# unsigned, from a process that dropped the capability: EPERM from the same check, before the
# signature is looked at.
for abi in "$K61" "$K612" "$K7"; do
  add_field "$abi" "crc8-own-preloaded" preload=crc8 "$(mod "$abi" crc8)"
  add_field "$abi" "crc8-own-modules_disabled" modules_disabled "$(mod "$abi" crc8)"
  add_field "$abi" "crc8-own-nocap" nocap "$(mod "$abi" crc8)"
done
# Taints (warnings, the module loads; the kernel's lines are compared with the agent's warnings
# below): no intree=Y, staging=Y, test=Y; exports without __kcrctab on a MODVERSIONS kernel.
rule_cases "$K61" "$K61" i915 i915- --only out_of_tree,staging,test_module,livepatch,no_retpoline
rule_cases "$K612" "$K612" xe xe- --only out_of_tree,staging,test_module,livepatch,no_retpoline
rule_cases "$K7" "$K7" xe xe- --only out_of_tree,staging,test_module,livepatch,no_retpoline
# K2: .BTF that does not parse on the running kernel's BTF (btf_module_notify): 7.2 refuses
# (EINVAL), 6.1 and 6.12 load with a warning (its line compared with the agent's below).
rule_cases "$K61" "$K61" i915 i915- --only btf_name_range,btf_type_range
rule_cases "$K612" "$K612" xe xe- --only btf_name_range,btf_type_range
rule_cases "$K7" "$K7" xe xe- --only btf_name_range,btf_type_range
# The exporter without CRCs shipped with the kernel's own i915: the kernel then has no CRC to
# compare i915's __versions with, and accepts (check_version).
for k in "$K61" "$K612"; do
  make_cases "$k" "$k" drm_display_helper drm_display_helper- --only exports_nocrc
  add "$k" "drm_display_helper-exports_nocrc+i915-own" "$(one_case)" "$(mod "$k" i915)"
done

# Module parameters checked against the module's parm=/parmtype=: an unknown one is ignored
# with a warning, a value its type cannot take is EINVAL (parse_args, after the symbols).
for k in "$K61" "$K612" "$K7"; do
  add_params "$k" i915-own-param_unknown i915 "agent_no_such_param=1" "$(mod "$k" i915)"
  add_params "$k" i915-own-param_bad_int i915 "enable_guc=notanumber" "$(mod "$k" i915)"
  # A hardware parameter (module_param_hw: parport_pc's io=) under lockdown=integrity: EPERM
  # from parse_one (LOCKDOWN_MODULE_PARAMETERS); Debian's own modules are signed, so the
  # signature check before it passes.
  add_params "$k@lockdown" parport_pc-own-param_hw parport_pc "io=0x378" "$(mod "$k" parport_pc)"
done

# module_blacklist=i915,xe: "Module %s is blacklisted", EPERM, before module_layout.
add "$K61@blacklist" "i915-own" "$(mod "$K61" i915)"
add "$K612@blacklist" "xe-own" "$(mod "$K612" xe)"
add "$K7@blacklist" "i915-own" "$(mod "$K7" i915)"
# nomodeset: what Debian's own i915 and xe init return (their code decides, see the agent's
# nomodeset_* reasons).
add "$K61@nomodeset" "i915-own" "$(mod "$K61" i915)"
add "$K612@nomodeset" "i915-own" "$(mod "$K612" i915)"
add "$K612@nomodeset" "xe-own" "$(mod "$K612" xe)"
add "$K7@nomodeset" "i915-own" "$(mod "$K7" i915)"
add "$K7@nomodeset" "xe-own" "$(mod "$K7" xe)"

# sizeof(struct module): .gnu.linkonce.this_module 64 bytes short. Last of each boot: 6.1 does
# not check it and loads a module whose struct module overlaps its next section (a WARNING,
# and removing it hits a BUG), so nothing is unloaded after it.
rule_cases "$K61" "$K61" i915 i915- --only this_module_size
rule_cases "$K612" "$K612" xe xe- --only this_module_size
rule_cases "$K7" "$K7" xe xe- --only this_module_size


# The kernels' answers: cached per target + key, else one boot per target for the cases
# without an answer (a group is asked again as a whole).
# one directory per harness: worktrees with different harnesses do not overwrite each other's
# answers in a shared cache
results="$CACHE/e2e-results/harness-${harness:0:16}"
python3 - "$cases" "$work" "$without" "$params" "$fields" <<'PY'
import hashlib, os, sys
cases, work, without_file, params_file, fields_file = sys.argv[1:6]
without = {tuple(l.split()[:2]): l.split()[2] for l in open(without_file)}
params = {tuple(l.split()[:2]): " ".join(l.split()[3:]) for l in open(params_file)}
fields = {}
for l in open(fields_file):
    fields.setdefault(tuple(l.split()[:2]), []).append(l.split()[2])

def sha(path, memo={}):
    if path not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo[path] = h.hexdigest()
    return memo[path]

# keys.<target>: UNIT KEY PATH per module (UNIT: CASE, or CASE/N in a group)
for line in open(cases):
    target, case, *paths = line.split()
    shas = [sha(p) for p in paths]
    suffix = " without=" + without[target, case] if (target, case) in without else ""
    if (target, case) in params:
        suffix += " params=" + params[target, case]
    for field in sorted(fields.get((target, case), [])):
        suffix += " " + field
    with open(os.path.join(work, "keys." + target), "a") as out:
        for n, (p, s) in enumerate(zip(paths, shas), 1):
            if len(paths) == 1 and not suffix:
                out.write("%s %s %s\n" % (case, s, p))
            else:
                key = hashlib.sha256(("%s %d%s" % (" ".join(shas), n, suffix)).encode()).hexdigest()
                out.write("%s/%d %s %s\n" % (case, n, key, p) if len(paths) > 1 else
                          "%s %s %s\n" % (case, key, p))
PY
mapfile -t targets < <(cut -d' ' -f1 "$cases" | awk '!seen[$0]++')
ask_kernels() { # one boot per target, in the background while the agent runs
for target in "${targets[@]}"; do
  abi=${target%%@*}
  mkdir -p "$results/$target"
  manifest="$work/manifest.$target"
  : >"$manifest"
  while read -r t case rest; do
    [[ $t == "$target" ]] || continue
    want=0
    while read -r unit key _; do
      [[ ${unit%/*} == "$case" ]] || continue
      [[ ${AGENT_E2E_FRESH:-0} == 1 ]] && want=1
      answer_current "$results/$target/$key" "$abi" || want=1
    done <"$work/keys.$target"
    if [[ $want -eq 1 ]]; then
      read -ra paths <<<"$rest"
      names=$(without_of "$target" "$case")
      read -ra pwords <<<"$(params_of "$target" "$case")"
      pfields=""
      for w in "${pwords[@]}"; do pfields+="param=$w "; done
      ffields=$(fields_of "$target" "$case")
      for p in "${paths[@]}"; do echo "$case ${names:+without=$names }$pfields$ffields$p" >>"$manifest"; done
    fi
  done <"$cases"
  [[ -s $manifest ]] || continue
  rc=0
  bash "$HERE/run-vm.sh" -a "$(variant_append "$target")" -o "$work/vm.$target" "$abi" \
    "$manifest" || rc=$?
  [[ $rc -le 1 ]] || die "run-vm.sh failed for $target"
  cp "$work/vm.$target.log" "$results/$target/last-boot.log"
  if ! variant_booted "$target" "$work/vm.$target.log"; then
    echo "agreement: $target: the kernel did not take '$(variant_append "$target")':" \
      "$(grep -oE 'E2E (BEGIN|LOCKDOWN|SIG_ENFORCE) .*' "$work/vm.$target.log" | tr '\n' ' ')" \
      "- its answers are not stored" >&2
    continue
  fi
  # store each answer: "errno N", "kernel-image SHA256", "harness SHA256", then the kernel's
  # messages for the module
  python3 - "$work/vm.$target" "$work/keys.$target" "$results/$target" "${image_sha[$abi]}" \
    "$harness" <<'PY'
import os, sys
vm, keys, outdir, image, harness = sys.argv[1:6]
key = {l.split()[0]: l.split()[1] for l in open(keys)}
dmesg = {}
for l in open(vm + ".dmesg"):
    unit, _, msg = l.rstrip("\n").partition("\t")
    dmesg.setdefault(unit, []).append(msg)
for l in open(vm):
    unit, errno = l.split()
    path = os.path.join(outdir, key[unit])
    with open(path + ".tmp", "w") as f:
        f.write("errno %s\nkernel-image %s\nharness %s\n" % (errno, image, harness))
        f.writelines(m + "\n" for m in dmesg.get(unit, []))
    os.replace(path + ".tmp", path)
PY
done
}
# 2 jobs at a time: the boots (one qemu after the other) and the agent runs share the cores
jobs_max=${AGENT_E2E_JOBS:-2}
( ask_kernels; : >"$work/kernels.done" ) &

# The agent's predictions, then the comparison. The kernel image carries the certificates the
# kernel trusts for module signatures: passed when the agent has an option for it.
image_opt=""
if [[ $kernel_only -eq 0 ]]; then
  image_opt=$("$AGENT" kabi check --help 2>&1 | grep -oE -- '--(vmlinuz|kernel-image)\b' | head -1 || true)
fi
tree_without() { # ABI NAME[,NAME...] -> a copy of ABI's module tree without those modules
  local abi=$1 names=$2 kver tree rel
  kver=$(<"$CACHE/$abi/.done")
  tree="$work/trees/$abi-without-$names/lib/modules/$kver"
  if [[ ! -d $tree ]]; then
    mkdir -p "${tree%/*}"
    cp -al "$(cd "$CACHE/$abi/modules" && pwd -P)" "$tree" 2>/dev/null \
      || cp -as "$(cd "$CACHE/$abi/modules" && pwd -P)" "$tree" || die "cannot copy the $abi tree"
    for name in ${names//,/ }; do
      rel=$(grep -m1 -oE "^([^:]*/)?$name\.ko(\.(xz|zst|gz))?:" "$tree/modules.dep") \
        || die "no $name module in $CACHE/$abi"
      rm -f "$tree/${rel%:}"
    done
    rm -f "$tree"/modules.{dep,dep.bin,symbols,symbols.bin,alias,alias.bin,softdep,devname}
    depmod -b "$work/trees/$abi-without-$names" "$kver" || die "depmod failed on $tree"
  fi
  echo "$tree"
}
if [[ $kernel_only -eq 0 ]]; then # made before the agent runs in parallel
  while read -r target case names; do tree_without "${target%%@*}" "$names" >/dev/null; done <"$without"
fi
predict() { # TARGET CASE PATHS: the agent's answer into agent.TARGET.CASE.{json,err,rc}
  local target=$1 case=$2 rest=$3 out="$work/agent.$1.$2" abi extra rc=0 paths args tree names cmdline pwords
  if [[ $kernel_only -eq 1 ]] || awk -v t="$target" -v c="$case" '$1 == t && $2 == c { f = 1 }
      END { exit !f }' "$expect"; then
    echo "-" >"$out.rc"
    return 0
  fi
  abi=${target%%@*}
  tree="$CACHE/$abi/modules"
  names=$(without_of "$target" "$case")
  [[ -z $names ]] || tree=$(tree_without "$abi" "$names")
  args=(kabi check --json --symvers "$CACHE/$abi/Module.symvers" --kernel-modules "$tree")
  [[ -n ${AGENT_E2E_POLICY:-} ]] && args+=(--policy "$AGENT_E2E_POLICY")
  [[ -n $image_opt ]] && args+=("$image_opt" "$CACHE/$abi/vmlinuz")
  extra=$(variant_agent_args "$target")
  [[ -n $extra ]] && args+=("$extra")
  cmdline=$(variant_cmdline "$target")
  pwords=$(params_cmdline "$target" "$case")
  [[ -n $pwords ]] && cmdline+="${cmdline:+ }$pwords"
  [[ -n $cmdline ]] && args+=(--kernel-cmdline "$cmdline")
  for field in $(fields_of "$target" "$case"); do
    case $field in
      preload=*) args+=(--loaded "${field#preload=}") ;;
      modules_disabled) args+=(--modules-disabled) ;;
      nocap) args+=(--no-cap-sys-module) ;;
    esac
  done
  read -ra paths <<<"$rest"
  "$AGENT" "${args[@]}" "${paths[@]}" >"$out.json" 2>"$out.err" || rc=$?
  echo "$rc" >"$out.rc"
}
while read -r target case rest; do
  while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do wait -n || true; done
  predict "$target" "$case" "$rest" &
done <"$cases"
wait
[[ -f $work/kernels.done ]] || die "asking the kernels failed"

for abi in "${!image_sha[@]}"; do echo "$abi ${image_sha[$abi]}"; done >"$work/image-sha"
python3 - "$cases" "$expect" "$work" "$results" "$kernel_only" "$HERE" "$harness" <<'PY'
import errno as E, json, os, sys
cases, expect_file, work, results = sys.argv[1:5]
kernel_only = sys.argv[5] == "1"
harness = sys.argv[7]
image_sha = dict(l.split() for l in open(os.path.join(work, "image-sha")))
sys.path.insert(0, sys.argv[6])
import mkcases  # noqa: E402 (modname)
expect = {}
for l in open(expect_file):
    target, case, errnos = l.split()
    expect[target, case] = [int(e) for e in errnos.split(",")]


def relevant(msgs):
    """The kernel's messages, the ones naming the verdict's cause first."""
    tiers = (("disagrees", "Unknown symbol", "no symbol version", "version magic", "namespace",
              "Key was rejected", "is rejected", "this_module", "kernel BUG", "WARNING"),
             ("kernel tainted",))

    def rank(m):
        return next((i for i, keys in enumerate(tiers) if any(k in m for k in keys)), len(tiers))
    return sorted(msgs, key=rank)


# The kernel's warning lines (taints, ignored parameters) and the agent's warning codes that
# predict them. A line the kernel printed needs its warning; a warning needs the kernel's line
# when the module loaded, unless the kernel prints it once per boot (an earlier case of the
# boot may have printed it) or only on some CPUs (retpoline: with a spectre_v2 mitigation).
TAINTS = [  # (kind, substring of the kernel's line, agent codes, every time)
    ("out_of_tree", "loading out-of-tree module taints kernel", {"out_of_tree"}, False),
    ("staging", "module is from the staging directory", {"staging"}, True),
    ("test", "loading test module taints kernel", {"test_module"}, False),
    ("livepatch", "tainting kernel with TAINT_LIVEPATCH", {"livepatch"}, False),
    ("license", "module license", {"license_taints"}, False),
    ("inherit", "inheriting taint", {"inherits_proprietary_taint"}, True),
    ("forced", "kernel tainted.", {"no_versions_table", "no_vermagic", "exports_without_crcs"}, False),
    ("unsigned", "module verification failed", {"unsigned_accepted", "unknown_key_accepted",
                                                "unsupported_signature_accepted"}, False),
    ("retpoline", "not compiled with retpoline", {"no_retpoline"}, False),
    ("unknown_param", "unknown parameter '", {"unknown_parameter"}, True),
    ("unsafe_param", "Setting dangerous option", {"parameter_unsafe"}, True),
    # K2: 6.12 (once per boot), 6.1 (every time; 7.2 prints it with its refusal)
    ("btf", "Kernel module BTF mismatch detected", {"module_btf_mismatch", "module_btf_unchecked"}, False),
    ("btf", "failed to validate module [", {"module_btf_mismatch", "module_btf_unchecked", "module_btf_invalid"},
     False),
]


def taint_problems(kerrno, kmsgs, reasons):
    codes = {r.get("code") for r in reasons if not r.get("fatal", True)}
    # the kernel's BTF line comes with 7.2's refusal too
    codes |= {r.get("code") for r in reasons if r.get("code") == "module_btf_invalid"}
    out = []
    for kind, line, want, every in TAINTS:
        printed = any(line in m for m in kmsgs)
        if printed and not codes & want:
            out.append("kernel printed a %s warning, the agent has none" % kind)
        elif not printed and codes & want and every and kerrno == 0:
            out.append("agent warns %s, the kernel printed nothing" % kind)
    return out


def ename(n):
    return "OK" if n == 0 else E.errorcode.get(n, "E?")


def show(n):
    return "%s(%d)" % (ename(n), n)


keys = {}
for target in {l.split()[0] for l in open(cases)}:
    for l in open(os.path.join(work, "keys." + target)):
        unit, key, _ = l.split()
        keys[target, unit] = key

pw = fl = 0
for line in open(cases):
    target, case, *paths = line.split()
    group = len(paths) > 1
    units = ["%s/%d" % (case, n) for n in range(1, len(paths) + 1)] if group else [case]
    answers = []  # (errno, messages) or None
    for unit in units:
        rfile = os.path.join(results, target, keys[target, unit])
        lines = open(rfile).read().splitlines() if os.path.exists(rfile) else []
        # an answer counts only for this kernel image and this harness (else: not stored today)
        if lines[1:3] == ["kernel-image " + image_sha[target.split("@")[0]], "harness " + harness]:
            answers.append((int(lines[0].split()[1]), relevant(lines[3:])))
        else:
            answers.append(None)
    doc, rc, err, agent_error = None, "-", "", None
    base = os.path.join(work, "agent.%s.%s" % (target, case))
    if not kernel_only and (target, case) not in expect:
        rc = open(base + ".rc").read().strip()
        err = open(base + ".err").read().strip()
        try:
            doc = json.load(open(base + ".json"))
            doc["modules"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            agent_error = "error(exit=%s,%s)" % (rc, type(e).__name__)
    all_ok = all(a is not None and a[0] == 0 for a in answers)
    for n, (unit, path, ans) in enumerate(zip(units, paths, answers)):
        label = "%s/%s" % (target, unit)
        if ans is None:
            print("FAIL %s kernel=no-answer agent=-" % label)
            fl += 1
            continue
        kerrno, kmsgs = ans
        kernel = show(kerrno)
        if kernel_only:
            print("KERNEL %s kernel=%s %s" % (label, kernel, kmsgs[0] if kmsgs else ""))
            continue
        reasons, ok = [], False
        if (target, case) in expect:
            want = expect[target, case][n]
            agent = "kernel-only,expected=" + show(want)
            ok = kerrno == want
        elif agent_error:
            agent = agent_error
        else:
            mods = doc["modules"]
            m = next((m for m in mods if m.get("path") == path), None)
            if m is None:  # by name: the k-th module of that name in the case
                names = [mkcases.modname(p).replace("-", "_") for p in paths]
                k = names[:n].count(names[n])
                same = [m for m in mods if str(m.get("name")).replace("-", "_") == names[n]]
                m = same[k] if k < len(same) else None
            try:
                verdict, aerrno = m["verdict"], int(m["errno"])
                reasons = m.get("reasons", [])
                agent = "%s:%s" % (verdict, show(aerrno))
                ok = (aerrno == kerrno and verdict == ("loadable" if kerrno == 0 else "refused")
                      and rc == ("0" if all_ok else "1"))
                if aerrno == kerrno and not ok:
                    agent += ",exit=" + rc
                taints = taint_problems(kerrno, ans[1], reasons)
                if ok and taints:
                    ok = False
                    agent += ",warnings=" + "; ".join(taints)
            except (KeyError, TypeError, ValueError) as e:
                agent = "error(exit=%s,%s)" % (rc, type(e).__name__)
        print("%s %s kernel=%s agent=%s" % ("PASS" if ok else "FAIL", label, kernel, agent))
        if ok:
            pw += 1
            continue
        fl += 1
        for msg in kmsgs[:5]:
            print("    kernel: " + msg)
        for r in reasons[:5]:
            print("    agent:  %s %s %s" % (r.get("code"), r.get("symbol") or "-",
                                         r.get("message") or ""))
        if err:
            print("    agent stderr: " + err.splitlines()[0])
if not kernel_only:
    print("%d passed, %d failed" % (pw, fl))
sys.exit(1 if fl else 0)
PY
