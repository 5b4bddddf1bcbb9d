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
  "matrix bad module|$work/badbundle/x.ko: empty|matrix --bundle $work/badbundle $symvers" \
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

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
