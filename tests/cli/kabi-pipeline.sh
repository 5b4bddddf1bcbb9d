#!/usr/bin/env bash
# `agent kabi diff`, `agent kabi matrix`, `agent kabi explain` and `kabi check --stablelist`
# through the CLI, on the unit-test fixtures: exit codes, the JSON contract a CI pipeline reads,
# and bad input (exit 2, the file named, never a verdict).
# Usage: kabi-pipeline.sh AGENT FIXTURE_BUILD_DIR FIXTURE_SOURCE_DIR
set -uo pipefail
agent=$1 fixtures=$2 sources=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
# run NAME WANT_EXIT -- ARGS...: stdout in $work/out, stderr in $work/err
run() {
  local name=$1 want=$2 rc
  shift 3
  "$agent" kabi "$@" >"$work/out" 2>"$work/err"
  rc=$?
  if [[ $rc -eq $want ]]; then pass "$name: exit $rc"; else fail "$name: exit $rc (want $want): $(cat "$work/err")"; fi
}
# json NAME PYTHON_EXPR: the expression over `j` (the parsed $work/out) must be true
json() {
  if python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$work/out" "$2" 2>>"$work/err"; then pass "$1"; else fail "$1: $2 on $(head -c 600 "$work/out")"; fi
}
contains() { if grep -qF -- "$2" "$3"; then pass "$1"; else fail "$1: '$2' not in $(head -c 600 "$3")"; fi; }

# Kernels: the fixture symvers (the bundle's CRCs), one with _printk's CRC changed, one with
# _printk gone, one with module_layout changed; a bundle of provider + consumer.
symvers=$sources/Module.symvers
mkdir -p "$work/same" "$work/crc" "$work/gone" "$work/layout" "$work/bundle"
cp "$symvers" "$work/same/Module.symvers"
sed 's/^0x92997ed8\t_printk/0x12345678\t_printk/' "$symvers" >"$work/crc/Module.symvers"
sed 's/\t_printk\t/\t_printk_v2\t/' "$symvers" >"$work/gone/Module.symvers"
sed 's/^0x6d4c2fd1\tmodule_layout/0x00000001\tmodule_layout/' "$symvers" | xz -c >"$work/layout/Module.symvers.xz"
cp "$fixtures/provider.ko" "$fixtures/consumer.ko" "$work/bundle/"
printf '[rhel9_x86_64_stablelist]\n\t_printk\n\tjiffies\n' >"$work/stablelist"

run "diff: same tables" 0 -- diff "$symvers" "$work/same/Module.symvers"
run "diff: CRC changed" 1 -- diff --json "$symvers" "$work/crc"
json "diff JSON: the CRC change" 'j["schema"] == 1 and j["summary"]["crc"] == 1 and j["changes"][0]["symbol"] == "_printk" and j["changes"][0]["old"]["crc"] == "0x92997ed8"'
run "diff --bundle: module_layout (xz symvers)" 1 -- diff --json --bundle "$work/bundle" "$symvers" "$work/layout/Module.symvers.xz"
json "diff --bundle JSON: module_layout, per module" 'j["module_layout"]["changes"] == ["crc"] and [m["name"] for m in j["modules"]] == ["kabi_consumer", "kabi_provider"] and j["imports"] == 1'
run "diff --bundle --stablelist: a covered symbol changed" 1 -- diff --bundle "$work/bundle" --stablelist "$work/stablelist" "$symvers" "$work/crc"
contains "diff text: the stablelisted change named" "stablelisted symbols that changed: 1" "$work/out"
contains "diff text: coverage" "covers 1 of the bundle's 1 imports" "$work/out"
run "diff: a removed symbol" 1 -- diff --bundle "$work/bundle" "$symvers" "$work/gone"
contains "diff text: removed" "_printk: removed" "$work/out"

run "matrix: reuse, rebuild, impossible" 1 -- matrix --json --bundle "$work/bundle" --stablelist "$work/stablelist" \
  "$work/same" "$work/crc" "$work/gone" "$work/layout" "$symvers"
json "matrix JSON: verdicts" '[k["verdict"] for k in j["kernels"]] == ["reuse", "rebuild", "impossible", "rebuild", "reuse"]'
json "matrix JSON: contract keys" 'j["schema"] == 1 and j["bundle"].endswith("bundle") and all(set(["kernel", "release", "verdict", "modules"]) <= set(k) for k in j["kernels"])'
json "matrix JSON: one image for the two same kernels" 'j["groups"][0]["kernels"] == [j["kernels"][0]["kernel"], j["kernels"][4]["kernel"]] and len(j["groups"]) == 4'
json "matrix JSON: reasons per module" 'j["kernels"][1]["modules"][0]["reasons"][0]["code"] == "crc_mismatch" and j["kernels"][3]["modules"][0]["counts"]["module_layout_crc"] == 1'
json "matrix JSON: stablelist coverage" 'j["stablelist"]["covered"] == 1 and j["stablelist"]["not_covered"] == []'
json "matrix JSON: a symvers alone says what it could not check" 'any("no module tree" in n for n in j["kernels"][0]["notes"])'
run "matrix: every kernel reuses" 0 -- matrix --bundle "$work/bundle" "$work/same" "$symvers"
contains "matrix text: grouped" "the bundle as built serves these 2 kernels" "$work/out"

# Kernels named by release, never shortened; a symvers alone named by its full path, and said so.
long="$work/a/rather/long/path/that/would/not/fit/in/a/column/of/twenty-eight"
mkdir -p "$long"
cp "$symvers" "$long/Module.symvers"
mkdir -p "$work/headers/include/generated"
cp "$symvers" "$work/headers/Module.symvers"
printf '#define UTS_RELEASE "6.1.0-56-amd64"\n' >"$work/headers/include/generated/utsrelease.h"
run "matrix: kernels by release" 0 -- matrix --bundle "$work/bundle" "$work/headers/Module.symvers" "$long/Module.symvers"
contains "matrix text: the headers' release" "1     6.1.0-56-amd64 " "$work/out"
contains "matrix text: an unnamed kernel by its full path" "1     $long/Module.symvers " "$work/out"
contains "matrix text: the path of a release" "6.1.0-56-amd64$(printf '%*s' $((${#long} + 15 - 14)) '')  CRCs from $work/headers/Module.symvers" "$work/out"
contains "matrix text: a path given once" "$long/Module.symvers  release unknown"$'\n' "$work/out"
contains "matrix text: what is not established" "kernel release not established" "$work/out"
if grep -qF '~' "$work/out"; then fail "matrix text: nothing shortened"; else pass "matrix text: nothing shortened"; fi
run "matrix JSON: release and where from" 0 -- matrix --json --bundle "$work/bundle" "$work/headers/Module.symvers" "$long/Module.symvers"
json "matrix JSON: release_from" 'j["kernels"][0]["release"] == "6.1.0-56-amd64" and j["kernels"][0]["release_from"] == "utsrelease.h" and j["kernels"][1]["release"] is None'

# diff: one name each side, labelled counts.
run "diff text: CRC changed" 1 -- diff "$work/headers/Module.symvers" "$work/crc/Module.symvers"
contains "diff text: old by release, its path once" "old  6.1.0-56-amd64  CRCs from $work/headers/Module.symvers (" "$work/out"
contains "diff text: new by path, once" "new  $work/crc/Module.symvers  release unknown (" "$work/out"
contains "diff text: summary" "6.1.0-56-amd64 -> $work/crc/Module.symvers: 1 symbol changed" "$work/out"
for label in "CRC changed: +1" "added: +0" "removed: +0" "moved to another module: +0" "export type changed: +0" \
  "namespace changed: +0"; do
  if grep -qE "^  $label\$" "$work/out"; then pass "diff text: '$label'"; else fail "diff text: '$label' not in $(cat "$work/out")"; fi
done
run "diff JSON: releases" 1 -- diff --json "$work/headers/Module.symvers" "$work/crc/Module.symvers"
json "diff JSON: release each side" 'j["old"]["release"] == "6.1.0-56-amd64" and j["new"]["release"] is None and any("not established" in n for n in j["new"]["notes"])'

# A tree whose modules carry no vermagic (basic.ko's key renamed): diff still compares the tables
# and says why the release is unknown; the matrix, which needs the vermagic, is an input error.
mkdir -p "$work/novermagic/kernel" "$work/novermagic/build"
python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); assert b.count(b"vermagic=") == 1
open(sys.argv[2], "wb").write(b.replace(b"vermagic=", b"xermagic="))' "$fixtures/basic.ko" "$work/novermagic/kernel/basic.ko"
cp "$symvers" "$work/novermagic/build/Module.symvers"
run "diff: a tree without vermagic" 0 -- diff "$work/novermagic" "$symvers"
contains "diff text: why its release is unknown" "note: kernel release not established: its modules' vermagic not read" "$work/out"
run "matrix: a tree without vermagic" 2 -- matrix --bundle "$work/bundle" "$work/novermagic"
contains "matrix: the tree named" "$work/novermagic: cannot read the kernel's vermagic" "$work/err"

# Links resolve inside the kernel given, never on this machine: trees whose absolute build link
# names a decoy Module.symvers on "the machine" (its _printk CRC changed: read, it would make the
# kernel a rebuild), and an unpacked root where the same absolute link names its own headers.
machine=$work/machine
decoy=$machine/usr/src/linux-headers-6.1.0-56-amd64
mkdir -p "$decoy/include/generated"
sed 's/^0x92997ed8\t_printk/0x0badc0de\t_printk/' "$symvers" >"$decoy/Module.symvers"
printf '#define UTS_RELEASE "9.9.9-decoy"\n' >"$decoy/include/generated/utsrelease.h"
run "matrix: the decoy itself is a rebuild (control)" 1 -- matrix --bundle "$work/bundle" "$decoy/Module.symvers"
for t in twin55 twin56; do
  mkdir -p "$work/$t/lib/modules/6.1.0-56-amd64/kernel"
  cp "$fixtures/provider.ko" "$fixtures/consumer.ko" "$work/$t/lib/modules/6.1.0-56-amd64/kernel/"
done
ln -s "$decoy" "$work/twin56/lib/modules/6.1.0-56-amd64/build"
ln -s /usr/src/linux-headers-6.1.0-55-amd64 "$work/twin55/lib/modules/6.1.0-56-amd64/build"
[[ -f $work/twin56/lib/modules/6.1.0-56-amd64/build/Module.symvers ]] && pass "the twin's build link leads to the decoy" ||
  fail "the twin's build link leads to the decoy"
run "matrix: twin trees, one build link to the machine's decoy" 0 -- matrix --json --bundle "$work/bundle" \
  "$work/twin55/lib/modules/6.1.0-56-amd64" "$work/twin56/lib/modules/6.1.0-56-amd64"
json "matrix JSON: the twins are one group" 'len(j["groups"]) == 1 and [k["verdict"] for k in j["kernels"]] == ["reuse", "reuse"]'
json "matrix JSON: the tree's own modules, not the decoy" 'all(k["symvers"].startswith(k["kernel"]) and "machine" not in k["symvers"] and k["release"] == "6.1.0-56-amd64" for k in j["kernels"])'
json "matrix JSON: the link not followed, said" 'any("build -> '"$decoy"': not inside" in n for n in j["kernels"][1]["notes"])'
# Unpacked roots: 56's build link names the decoy's absolute path, 55's Debian's own; each root
# holds its headers at the path its link names.
for v in 55 56; do
  r=$work/root$v headers=/usr/src/linux-headers-6.1.0-$v-amd64
  [[ $v == 56 ]] && headers=$decoy
  mkdir -p "$r/lib/modules/6.1.0-56-amd64/kernel" "$r$headers/include/generated"
  cp "$fixtures/provider.ko" "$fixtures/consumer.ko" "$r/lib/modules/6.1.0-56-amd64/kernel/"
  cp "$symvers" "$r$headers/Module.symvers"
  printf '#define UTS_RELEASE "6.1.0-56-amd64"\n' >"$r$headers/include/generated/utsrelease.h"
  ln -s "$headers" "$r/lib/modules/6.1.0-56-amd64/build"
done
run "matrix: unpacked roots, absolute build links" 0 -- matrix --bundle "$work/bundle" "$work/root55" "$work/root56"
contains "matrix text: the root's own headers" "6.1.0-56-amd64  given as $work/root56; CRCs from $work/root56$decoy/Module.symvers" "$work/out"
contains "matrix text: one group" "group 1 (reuse): the bundle as built serves these 2 kernels: 6.1.0-56-amd64, 6.1.0-56-amd64" "$work/out"
if grep -qF -e "9.9.9-decoy" -e "CRCs from $decoy" "$work/out"; then fail "matrix text: no decoy"; else pass "matrix text: no decoy"; fi
run "matrix JSON: unpacked roots" 0 -- matrix --json --bundle "$work/bundle" "$work/root55" "$work/root56"
json "matrix JSON: full tables, by vermagic, one group" 'len(j["groups"]) == 1 and all(k["release_from"] == "vermagic" and not any("not inside" in n for n in k["notes"]) and k["symvers"].endswith("/Module.symvers") for k in j["kernels"])'
run "diff: the roots, nothing of the decoy" 0 -- diff --bundle "$work/bundle" "$work/root55" "$work/root56"
contains "diff text: both by release" "6.1.0-56-amd64 -> 6.1.0-56-amd64: 0 symbols changed" "$work/out"

mkdir -p "$work/tree/kernel"
cp "$fixtures/basic.ko" "$work/tree/kernel/"
run "check --stablelist: verdict and coverage" 0 -- check --json --stablelist "$work/stablelist" --symvers "$symvers" \
  --kernel-modules "$work/tree" "$fixtures/provider.ko" "$fixtures/consumer.ko"
json "check JSON: stablelist" 'j["stablelist"]["imports"] == 1 and j["stablelist"]["covered"] == 1'

run "explain: a member added" 1 -- explain kabi_dev_register --old "$fixtures/explain_old.o" --new "$fixtures/explain_new.o" --json
json "explain JSON: first difference" 'j["first_difference"]["where"] == "struct kabi_dev" and j["first_difference"]["what"] == "member 2 added" and j["first_difference"]["old"] is None and j["first_difference"]["new"] in ("unsigned long flags", "long unsigned int flags")'
run "explain: unchanged" 0 -- explain kabi_version --old "$fixtures/explain_old.o" --new "$fixtures/explain_new.o"
run "explain text" 1 -- explain kabi_dev_count --old "$fixtures/explain_old.o" --new "$fixtures/explain_new.o"
contains "explain text: the prototype" "old: int kabi_dev_count(void)" "$work/out"

# Bad input: exit 2 naming the file.
printf 'not a symvers\n' >"$work/garbage.symvers"
printf '\tgood\n\tnot a symbol\n' >"$work/bad.stablelist"
: >"$work/empty.ko"
mkdir -p "$work/badbundle" "$work/nobundle"
mkfifo "$work/fifo"
cp "$work/empty.ko" "$work/badbundle/x.ko"
for c in \
  "diff garbage|$work/garbage.symvers: line 1|diff $symvers $work/garbage.symvers" \
  "diff missing|$work/missing: no such file|diff $symvers $work/missing" \
  "matrix empty bundle|$work/nobundle: no kernel module|matrix --bundle $work/nobundle $symvers" \
  "matrix bad stablelist|$work/bad.stablelist: line 2|matrix --bundle $work/bundle --stablelist $work/bad.stablelist $symvers" \
  "matrix garbage kernel|$work/garbage.symvers: line 1|matrix --bundle $work/bundle $work/garbage.symvers" \
  "explain no DWARF|$fixtures/explain_nodebug.o: no DWARF|explain kabi_version --old $fixtures/explain_nodebug.o --new $fixtures/explain_new.o" \
  "matrix FIFO kernel|$work/fifo: neither a Module.symvers nor a directory|matrix --bundle $work/bundle $work/fifo" \
  "matrix FIFO stablelist|$work/fifo: is a FIFO|matrix --bundle $work/bundle --stablelist $work/fifo $symvers" \
  "explain FIFO|$work/fifo: is a FIFO|explain kabi_version --old $work/fifo --new $fixtures/explain_new.o" \
  "check bad stablelist|$work/bad.stablelist: line 2|check --stablelist $work/bad.stablelist --symvers $symvers --kernel-modules $work/tree $fixtures/provider.ko" \
  "explain no symbol|no external function or variable nope|explain nope --old $fixtures/explain_old.o --new $fixtures/explain_new.o"; do
  IFS='|' read -r name text args <<<"$c"
  read -r -a argv <<<"$args"
  run "$name" 2 -- "${argv[@]}"
  contains "$name: message" "$text" "$work/err"
done

# A bundle file the kernel would not take for a module: no input error, a module refused with the
# kernel's reason (ENOEXEC) on every kernel.
run "matrix: a file that is no module" 1 -- matrix --bundle "$work/badbundle" "$symvers"
contains "matrix: a file that is no module: refused" "x: rebuild, ENOEXEC (1 elf_header_invalid)" "$work/out"
contains "matrix: a file that is no module: the kernel's message" "elf_header_invalid: Invalid ELF header len 0" "$work/out"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
