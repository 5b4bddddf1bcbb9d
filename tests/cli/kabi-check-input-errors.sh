#!/usr/bin/env bash
# `agent kabi check` on bad input: exit 2 and one clear message naming the file, never a crash
# (a signal or a sanitizer report) and never a verdict; a file the kernel refuses as no module
# is a refused verdict instead. Uses the unit test fixtures.
# Usage: kabi-check-input-errors.sh AGENT FIXTURE_BUILD_DIR FIXTURE_SOURCE_DIR
set -uo pipefail
agent=$1 fixtures=$2 sources=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

symvers="$sources/Module.symvers"
tree="$work/tree/kernel"
mkdir -p "$tree"
cp "$fixtures/basic.ko" "$tree/"
good="$fixtures/basic.ko"

: >"$work/empty.ko"
head -c 300 "$good" >"$work/truncated.ko"
head -c 4000 /dev/urandom >"$work/garbage.ko"
printf '\x7fELF%s' "$(head -c 200 /dev/zero | tr '\0' 'x')" >"$work/elfmagic.ko"
printf 'not a symvers file\n' >"$work/garbage.symvers"
: >"$work/empty.symvers"
printf '0x12345678\tsym\tvmlinux\tEXPORT_SYMBOL\n0xZZ\tbad\tvmlinux\tEXPORT_SYMBOL\n' >"$work/badline.symvers"
xz -c "$good" | head -c 500 >"$work/cut.ko.xz"
mkfifo "$work/fifo.ko"
truncate -s 200G "$work/sparse.ko"
# Bytes that are not UTF-8 and terminal control bytes in a module string (the firmware name,
# same length, so the ELF stays valid).
python3 - "$good" "$work/hostile.ko" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
old = b"firmware=i915/dg2_guc_70.bin"
new = b"firmware=i915/\xff\xfe\x1b[1m\x07_70.bin"
assert len(new) == len(old) and old in data
open(sys.argv[2], "wb").write(data.replace(old, new))
PY

# expect NAME WANT_EXIT WANT_TEXT -- ARGS...
expect() {
  local name=$1 want=$2 text=$3
  shift 4
  local out rc
  out=$("$agent" kabi check "$@" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc -eq $want && $out == *"$text"* ]]; then
    echo "PASS $name: exit $rc: $out"
    passed=$((passed + 1))
  else
    echo "FAIL $name: exit $rc (want $want), stderr: '$out' (want it to contain '$text')"
    failed=$((failed + 1))
  fi
}

base=(--symvers "$symvers" --kernel-modules "$work/tree")
# A file the kernel would not take for a module is no input error but a refused module: ENOEXEC
# and the kernel's reason (exit 1), named by its path.
# refused NAME FILE WANT_CODE
refused() {
  local name=$1 file=$2 code=$3 out rc
  out=$("$agent" kabi check --json "${base[@]}" "$file" 2>"$work/refused.err")
  rc=$?
  if [[ $rc -eq 1 ]] && python3 -c '
import json, sys
m = json.loads(sys.stdin.read())["modules"]
ok = len(m) == 1 and m[0]["path"] == sys.argv[1] and m[0]["errno"] == 8 and m[0]["verdict"] == "refused"
sys.exit(0 if ok and any(r["code"] == sys.argv[2] for r in m[0]["reasons"]) else 1)' "$file" "$code" <<<"$out"; then
    echo "PASS $name: exit $rc, ENOEXEC, $code"
    passed=$((passed + 1))
  else
    echo "FAIL $name: exit $rc (want 1, ENOEXEC, $code): $out $(cat "$work/refused.err")"
    failed=$((failed + 1))
  fi
}
refused "empty module" "$work/empty.ko" elf_header_invalid
refused "truncated module" "$work/truncated.ko" elf_section_table_invalid
refused "garbage module" "$work/garbage.ko" elf_header_invalid
refused "ELF magic only" "$work/elfmagic.ko" elf_type_not_rel
expect "cut .ko.xz" 2 "$work/cut.ko.xz: truncated xz" -- "${base[@]}" "$work/cut.ko.xz"
expect "missing module" 2 "$work/nope.ko: cannot open" -- "${base[@]}" "$work/nope.ko"
expect "a directory as module" 2 "$work: is a directory" -- "${base[@]}" "$work"
expect "garbage symvers" 2 "$work/garbage.symvers: line 1" -- --symvers "$work/garbage.symvers" --kernel-modules "$work/tree" "$good"
expect "empty symvers" 2 "$work/empty.symvers: no symbols" -- --symvers "$work/empty.symvers" --kernel-modules "$work/tree" "$good"
expect "bad symvers line" 2 "$work/badline.symvers: line 2: bad CRC" -- --symvers "$work/badline.symvers" --kernel-modules "$work/tree" "$good"
expect "no module tree" 2 "$work/none: not a module directory" -- --symvers "$symvers" --kernel-modules "$work/none" "$good"
expect "missing --symvers" 2 "--symvers is required" -- --kernel-modules "$work/tree" "$good"
# Never opened: a FIFO would block forever, a device could act on open.
expect "a FIFO as module" 2 "$work/fifo.ko: is a FIFO, not a file" -- "${base[@]}" "$work/fifo.ko"
expect "a device as module" 2 "/dev/zero: is a character device, not a file" -- "${base[@]}" /dev/zero
expect "a device as symvers" 2 "/dev/zero: is a character device" -- --symvers /dev/zero --kernel-modules "$work/tree" "$good"
expect "a 200 GiB sparse module" 2 "$work/sparse.ko: is 204800 MiB, more than the" -- "${base[@]}" "$work/sparse.ko"

# Hostile bytes in a module string: the JSON stays valid (invalid UTF-8 replaced), the text
# report shows them escaped, and either way the module gets a verdict.
verdict_ok() { # NAME RC OUTPUT_FILE CHECK_COMMAND...
  local name=$1 rc=$2
  shift 2
  if [[ $rc -le 1 ]] && "$@"; then
    echo "PASS $name: exit $rc"
    passed=$((passed + 1))
  else
    echo "FAIL $name: exit $rc"
    failed=$((failed + 1))
  fi
}
"$agent" kabi check --json -v "${base[@]}" "$work/hostile.ko" >"$work/hostile.json" 2>"$work/hostile.err"
verdict_ok "non-UTF-8 in a module string: JSON" $? python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/hostile.json"
"$agent" kabi check -v "${base[@]}" "$work/hostile.ko" >"$work/hostile.txt" 2>&1
rc=$?
no_raw_controls() { ! LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$work/hostile.txt"; }
verdict_ok "control bytes in a module string: text" $rc no_raw_controls
# A well-formed module gets a verdict (0 or 1), not an input error.
"$agent" kabi check "${base[@]}" "$good" >/dev/null 2>&1
rc=$?
if [[ $rc -le 1 ]]; then
  echo "PASS a well-formed module gets a verdict: exit $rc"
  passed=$((passed + 1))
else
  echo "FAIL a well-formed module: exit $rc, want a verdict (0 or 1)"
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
