#!/usr/bin/env bash
# The text of `agent kabi check` and `agent --check` as a pipe and a terminal see it, on the unit-test fixtures: one
# reason a line into a pipe (a kernel message is never split), wrapped only on a terminal, a
# summary line last, `-q` for that line alone, warnings without -v, and the --kernel-image hint
# only when an image is there. Every expected value is set up here: the CRCs and the release
# come from the fixture's sources, the kernel's messages from the kernel's own wording. The same
# for `agent --check` on the committed base node.
# Usage: check-output.sh AGENT FIXTURE_BUILD_DIR FIXTURE_SOURCE_DIR
set -uo pipefail
agent=$1 fixtures=$2 sources=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# same NAME GOT WANT
same() { if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi; }
has_line() { if grep -qxF -- "$2" "$3"; then pass "$1"; else fail "$1: no line '$2' in: $(cat "$3")"; fi; }
lacks() { if ! grep -qF -- "$2" "$3"; then pass "$1"; else fail "$1: '$2' in: $(cat "$3")"; fi; }

# The release the fixture module was built for, from its source.
kver=$(sed -n 's/^MODINFO(vermagic, "\([^ ]*\) .*/\1/p' "$sources/basic.c")
[[ -n $kver ]] || { echo "FAIL no vermagic in $sources/basic.c"; exit 1; }
crc=$(sed -n 's/^ *{\(0x[0-9a-f]*\), "drm_dev_register"},$/\1/p' "$sources/basic.c")
[[ -n $crc ]] || { echo "FAIL no drm_dev_register CRC in $sources/basic.c"; exit 1; }

# The fixture's tables with drm_dev_register exported by vmlinux (the tree has no drm module):
# as the module was linked ($work/same.symvers), and with another CRC ($work/Module.symvers).
grep -q "^$crc	drm_dev_register	drivers/gpu/drm/drm	" "$sources/Module.symvers" ||
  { echo "FAIL drm_dev_register $crc not in $sources/Module.symvers"; exit 1; }
sed "s|^$crc\tdrm_dev_register\tdrivers/gpu/drm/drm\t|$crc\tdrm_dev_register\tvmlinux\t|" "$sources/Module.symvers" >"$work/same.symvers"
sed "s/^$crc\tdrm_dev_register\t/0x00c0ffee\tdrm_dev_register\t/" "$work/same.symvers" >"$work/Module.symvers"
root=$work/root
tree=$root/lib/modules/$kver
mkdir -p "$tree/kernel"
cp "$fixtures/basic.ko" "$tree/kernel/"
: >"$tree/modules.builtin"  # a kernel's tree has them (none built in here)
: >"$tree/modules.builtin.modinfo"
args=(kabi check --symvers "$work/Module.symvers" --kernel-modules "$tree")
message="kabi_basic: disagrees about version of symbol drm_dev_register (kernel 0x00c0ffee, module $crc)"
summary="1/1 refused (EINVAL) on $kver"

# 1. Into a pipe: the reason whole on one line (longer than 80 columns), the summary last.
"$agent" "${args[@]}" "$fixtures/basic.ko" | cat >"$work/pipe.txt"
rc=${PIPESTATUS[0]}
same "pipe: exit 1 (refused)" "$rc" 1
has_line "pipe: the kernel's message on one line (${#message} + columns)" "  crc_mismatch: $message" "$work/pipe.txt"
same "pipe: the last line is the summary" "$(tail -n 1 "$work/pipe.txt")" "$summary"

# 2. On a terminal (a pty of 60 columns): wrapped, and the summary is still the last line.
if command -v script >/dev/null; then
  script -qec "stty cols 60 rows 40; '$agent' ${args[*]@Q} '$fixtures/basic.ko'" /dev/null | tr -d '\r' >"$work/tty.txt"
  lacks "terminal: the long reason is wrapped" "$message" "$work/tty.txt"
  if grep -q '^    [^ ]' "$work/tty.txt"; then pass "terminal: its continuation is indented"; else
    fail "terminal: no indented continuation in: $(cat "$work/tty.txt")"; fi
  # (A line of one word - a module's path - cannot be wrapped; its length is the build directory's.)
  long=$(awk 'length > 60 && /[^ ] +[^ ]/' "$work/tty.txt" | head -n 3)
  same "terminal: every line of words fits 60 columns" "$long" ""
  same "terminal: the last line is the summary" "$(tail -n 1 "$work/tty.txt")" "$summary"
else
  fail "terminal: script(1) (util-linux) is needed to give the agent a pty"
fi

# 3. -q: the summary line alone, the same exit code; --quiet likewise.
"$agent" "${args[@]}" -q "$fixtures/basic.ko" >"$work/q.txt" 2>"$work/q.err"
rc=$?
same "-q: exit 1" "$rc" 1
same "-q: only the summary line" "$(cat "$work/q.txt")" "$summary"
same "-q: nothing on stderr" "$(cat "$work/q.err")" ""
same "--quiet: the same" "$("$agent" "${args[@]}" --quiet "$fixtures/basic.ko")" "$summary"

# 4. Warnings without -v: a kernel whose own modules are signed takes an unsigned one, tainted.
stree=$work/signed/lib/modules/$kver
mkdir -p "$stree/kernel"
cp "$fixtures/signed.ko" "$stree/kernel/basic.ko"
: >"$stree/modules.builtin"
: >"$stree/modules.builtin.modinfo"
sargs=(kabi check --symvers "$work/same.symvers" --kernel-modules "$stree")
"$agent" "${sargs[@]}" "$fixtures/basic.ko" >"$work/unsigned.txt"
rc=$?
same "unsigned: exit 0 (loadable)" "$rc" 0
has_line "unsigned: the taint warning shown without -v" \
  "  warning: unsigned_accepted: kabi_basic: module verification failed: signature and/or required key missing - tainting kernel" \
  "$work/unsigned.txt"
same "unsigned: the summary counts it" "$(tail -n 1 "$work/unsigned.txt")" "1/1 loadable on $kver, 1 warning"

# 4b. What `agent check` reads live, told: a module of that name in /proc/modules (--loaded; the
# kernel's name check: EEXIST), kernel.modules_disabled=1 (may_init_module: EPERM). Another
# name loaded changes nothing (the module above loads).
"$agent" "${sargs[@]}" -q --loaded crc8,kabi-other "$fixtures/basic.ko" >"$work/other-loaded.txt"
same "--loaded another name: exit 0" "$?" 0
"$agent" "${sargs[@]}" --loaded crc8,kabi-basic "$fixtures/basic.ko" >"$work/loaded.txt"
same "--loaded kabi-basic: exit 1" "$?" 1
has_line "--loaded: the name check's refusal" "  already_loaded: module kabi_basic is already loaded" "$work/loaded.txt"
same "--loaded: EEXIST" "$(tail -n 1 "$work/loaded.txt")" "1/1 refused (EEXIST) on $kver, 1 warning"
"$agent" "${sargs[@]}" -q --modules-disabled "$fixtures/basic.ko" >"$work/disabled.txt"
same "--modules-disabled: exit 1" "$?" 1
same "--modules-disabled: EPERM" "$(cat "$work/disabled.txt")" "1/1 refused (EPERM) on $kver, 1 warning"
"$agent" "${sargs[@]}" --no-cap-sys-module "$fixtures/basic.ko" >"$work/nocap.txt"
same "--no-cap-sys-module: exit 1" "$?" 1
has_line "--no-cap-sys-module: the capability check's refusal" \
  "  no_cap_sys_module: the agent's process lacks CAP_SYS_MODULE in its effective capabilities" "$work/nocap.txt"

# 5. Signed by a key that is not the kernel's own: not verified without the kernel's image. The
# hint names --kernel-image only when the image is there beside the tree.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -quiet -out "$work/other.key"
openssl req -new -x509 -key "$work/other.key" -sha256 -days 3650 -set_serial 0x0e01 \
  -subj "/CN=another key" -out "$work/other.pem"
openssl cms -sign -binary -noattr -nocerts -nosmimecap -md sha256 -in "$fixtures/basic.ko" \
  -signer "$work/other.pem" -inkey "$work/other.key" -outform DER -out "$work/other.p7s"
sh "$sources/append-signature.sh" "$fixtures/basic.ko" "$work/other.p7s" "$work/other.ko"
"$agent" "${sargs[@]}" "$work/other.ko" >"$work/other.txt"
if grep -q "warning: signature_not_verified: the kernel's certificates were not available" "$work/other.txt"; then
  pass "other key: signature_not_verified shown without -v"
else
  fail "other key: no signature_not_verified warning in: $(cat "$work/other.txt")"
fi
lacks "other key, no image: no --kernel-image hint" "--kernel-image" "$work/other.txt"
mkdir -p "$work/signed/boot"
: >"$work/signed/boot/vmlinuz-$kver"
"$agent" "${sargs[@]}" "$work/other.ko" >"$work/image.txt"
image=$(realpath "$work/signed/boot/vmlinuz-$kver")
if grep -q "^hint: --kernel-image $image " "$work/image.txt"; then pass "other key, image beside the tree: the hint names it"; else
  fail "other key, image there: no hint naming $image in: $(cat "$work/image.txt")"; fi
"$agent" "${sargs[@]}" -q "$work/other.ko" >"$work/image-q.txt"
same "other key, -q: the summary alone" "$(cat "$work/image-q.txt")" "1/1 loadable on $kver, 1 warning"

# 6. agent --check on the committed base node (sysfs/procfs of a GPU node running $kver, whose
# kernel checks signatures) with a module tree of basic.ko and headers that hold the kernel's
# Module.symvers but no Makefile. The bundle: basic.ko made to drive the node's Flex 170
# (8086:56c0) and linked against another drm_dev_register (EINVAL); it is unsigned (a warning).
node=$work/node
cp -a "$sources/../hosts/base" "$node"
mkdir -p "$node/lib/modules/$kver/kernel" "$node/usr/src/linux-headers-$kver" "$work/bundle"
cp "$fixtures/basic.ko" "$node/lib/modules/$kver/kernel/"
printf 'kernel/basic.ko:\n' >"$node/lib/modules/$kver/modules.dep"
{ cat "$work/same.symvers"; printf '0x0badf00d\tkabi_optional_hook\tvmlinux\tEXPORT_SYMBOL\t\n'; } \
  >"$node/usr/src/linux-headers-$kver/Module.symvers"
ln -s "/usr/src/linux-headers-$kver" "$node/lib/modules/$kver/build"
python3 - "$fixtures/basic.ko" "$work/bundle/basic.ko" "$crc" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
alias_old, alias_new = b"pci:v00008086d00005690sv", b"pci:v00008086d000056C0sv"
crc_old = struct.pack("<Q", int(sys.argv[3], 16)) + b"drm_dev_register\0"
crc_new = struct.pack("<Q", 0x00c0ffee) + b"drm_dev_register\0"
assert data.count(alias_old) == 1 and data.count(crc_old) == 1
open(sys.argv[2], "wb").write(data.replace(alias_old, alias_new).replace(crc_old, crc_new))
PY
cargs=(--check --root "$node" --bundle "$work/bundle" --state-dir "$work/state" --bundle-firmware "$work/no-firmware")
# Two warnings: unsigned, and live_exports_unread (the node's loaded modules are not in its
# tree, so their exports cannot be read against basic.ko's).
check_summary="refuse (exit 20) on $kver: 1/1 refused (EINVAL), 2 warnings; modules_refused, no_kernel_headers"
"$agent" "${cargs[@]}" | cat >"$work/check.txt"
rc=${PIPESTATUS[0]}
same "--check: exit 20 (refuse)" "$rc" 20
has_line "--check, pipe: the kernel's message on one line" \
  "  crc_mismatch: kabi_basic: disagrees about version of symbol drm_dev_register (kernel $crc, module 0x00c0ffee)" \
  "$work/check.txt"
has_line "--check: the verified symvers, once" "  symvers      /lib/modules/$kver/build/Module.symvers" "$work/check.txt"
same "--check: the symvers file is named once" "$(grep -c "build/Module.symvers" "$work/check.txt")" 1
if grep -qF "/lib/modules/$kver/build (incomplete: needs Makefile)," "$work/check.txt"; then
  pass "--check: the headers lack their Makefile, and only that is said"
else fail "--check: no '(incomplete: needs Makefile)' in: $(grep -F incomplete "$work/check.txt")"; fi
has_line "--check: the refusal's hint" \
  "    hint: install linux-headers-$kver on the node; or use --build-mode sidecar with a Driver Toolkit image for $kver; or ship an image built for $kver" \
  "$work/check.txt"
has_line "--check: 13 functions in the base node, counted in words" "Devices (13 PCI functions via sysfs)" "$work/check.txt"
lacks "--check: host paths inside the root" "$node/" "$work/check.txt"
lacks "--check: the plan says more than the decision's name" "nothing: refuse" "$work/check.txt"
same "--check: the last line is the summary" "$(tail -n 1 "$work/check.txt")" "$check_summary"
"$agent" "${cargs[@]}" -q >"$work/check-q.txt" 2>"$work/check-q.err"
rc=$?
same "--check -q: exit 20" "$rc" 20
same "--check -q: the summary alone" "$(cat "$work/check-q.txt")" "$check_summary"
same "--check -q: nothing on stderr" "$(cat "$work/check-q.err")" ""
if command -v script >/dev/null; then
  script -qec "stty cols 70 rows 40; '$agent' ${cargs[*]@Q}" /dev/null | tr -d '\r' >"$work/check-tty.txt"
  lacks "--check, terminal: the module's reason wrapped" "version of symbol drm_dev_register (kernel" "$work/check-tty.txt"
  same "--check, terminal: the summary last" "$(tail -n 1 "$work/check-tty.txt")" "$check_summary"
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
