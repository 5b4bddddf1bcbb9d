#!/usr/bin/env bash
# The command line as a newcomer meets it: bare `agent` prints the usage and touches nothing;
# every command's --help shows its own options and exit codes; a misspelt command or option is
# named with the nearest known word; a path given explicitly is used or is an error; every
# parser error carries the `agent:` prefix and exits 2. Uses the committed base node and a
# module of the kABI unit fixtures.
# Usage: usage.sh AGENT KABI_FIXTURE_BUILD_DIR BASE_NODE
set -uo pipefail
agent=$1 fixtures=$2 base=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/agent-usage.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "PASS $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1: $2"; }

# run ARGS...: sets rc, out, err.
run() {
  rc=0
  out=$("$agent" "$@" 2>"$work/err") || rc=$?
  err=$(<"$work/err")
}
# expect NAME RC WORDS...: the exit code, and each word in stderr.
expect() {
  local name=$1 want=$2 w
  shift 2
  if [[ $rc != "$want" ]]; then bad "$name" "exit $rc, expected $want; stderr: $err"; return; fi
  for w in "$@"; do
    if ! grep -qF -- "$w" <<<"$err"; then bad "$name" "stderr lacks '$w': $err"; return; fi
  done
  if [[ -n $err ]] && ! grep -q '^agent' <<<"$err"; then bad "$name" "stderr without the agent: prefix: $err"; return; fi
  ok "$name"
}

[[ -f $fixtures/basic.ko ]] || { echo "usage: no kABI fixture module $fixtures/basic.ko (build the kabi_fixtures target)"; exit 1; }
[[ -f $base/proc/sys/kernel/osrelease ]] || { echo "usage: no base node at $base"; exit 1; }
cp -a "$base" "$work/node"
mkdir -p "$work/bundle"
cp "$fixtures/basic.ko" "$work/bundle/"

# ---- bare agent: the usage, nothing touched ------------------------------------------------
# Under strace: the old bare `agent` was the entrypoint (lock, state directory, inserts). None of
# those system calls may happen; the trace must show the process ran (its own execve).
for args in "" "-v"; do
  rc=0
  # shellcheck disable=SC2086  # the empty case is no argument at all
  HOST_ROOT=$work/node strace -f -qq -o "$work/trace" -e trace=execve,mkdir,mkdirat,flock,init_module,finit_module,delete_module,openat \
    "$agent" $args >"$work/out" 2>"$work/err" || rc=$?
  err=$(<"$work/err")
  if ! grep -q 'execve(' "$work/trace"; then bad "bare agent $args" "strace recorded nothing: $(head -c 300 "$work/trace")"; continue; fi
  if grep -E 'mkdir|flock|init_module|delete_module|openat\([^)]*(/run/intel-gpu-driver|/node)' "$work/trace" >"$work/acts"; then
    bad "bare agent $args" "it acted: $(head -3 "$work/acts")"
    continue
  fi
  expect "bare agent $args: usage, exit 2, no action" 2 "Usage: agent" "no command given" "agent run"
done

# ---- help: each command's own options, its exit codes ---------------------------------------
for spec in "run:--root:--state-dir:--build-mode:--exit-on-refuse:Exit codes: 0 stopped" \
            "check:--root:--bundle:--symvers:--json:Exit codes: 0 prebuilt" \
            "unload:--root:--state-dir:--nfd-dir:--firmware-dir:Exit codes: 0 everything" \
            "ready:--root:--state-dir:Exit codes: 0 ready" \
            "build:--build-cache:--cache:--build-timeout:--timeout:--rebuild:Exit codes: 0 built" \
            "kabi check:--symvers:--kernel-modules:--kernel-image:Exit codes: 0 every module" \
            "kabi matrix:--bundle:Exit codes: 0 every kernel" \
            "kabi diff:--bundle:Exit codes: 0 nothing changed" \
            "kabi explain:--old:Exit codes: 0 the same"; do
  IFS=: read -r -a words <<<"$spec"
  read -r -a cmd <<<"${words[0]}"
  run "${cmd[@]}" --help
  missing=""
  for w in "${words[@]:1}"; do grep -qF -- "$w" <<<"$out" || missing+=" '$w'"; done
  if ((rc != 0)) || [[ -n $missing ]]; then bad "${words[0]} --help" "exit $rc, lacks$missing"; else ok "${words[0]} --help: its options and exit codes"; fi
done
# The top level lists the commands, not their ~30 options.
run --help
if ((rc == 0)) && grep -q "^  run " <<<"$out" && grep -q "^  check " <<<"$out" && ! grep -q -- "--build-mode\|--state-dir" <<<"$out"; then
  ok "--help: the commands, not every option"
else
  bad "--help" "exit $rc: $out"
fi

# ---- misspelt words: named, with the nearest known one ---------------------------------------
run kabi chek
expect "kabi chek" 2 "unknown command 'chek'" "did you mean 'check'"
run kabi check --symver x --kernel-modules y "$fixtures/basic.ko"
expect "kabi check --symver" 2 "unknown option --symver" "did you mean '--symvers'"
run check --roo /
expect "check --roo" 2 "unknown option --roo" "did you mean '--root'"
run --json
expect "bare --json (an option of commands, not of agent)" 2 "unknown option --json"
run kabi check --root / --symvers x --kernel-modules y "$fixtures/basic.ko"
expect "an option of another command" 2 "unknown option --root"
# CLI11's own errors carry the prefix and the command.
run run --bind-timeout 0
expect "run --bind-timeout 0" 2 "agent: run: " "--bind-timeout"
run kabi check --symvers x "$fixtures/basic.ko"
expect "kabi check without --kernel-modules" 2 "agent: kabi check: " "--kernel-modules is required"
run run --check
expect "run --check" 2 "--check is the check command"

# ---- paths given explicitly: used, or an error naming them -----------------------------------
run check --root "$work/absent"
expect "check --root absent" 2 "$work/absent" "No such file or directory"
if grep -q "root: root" <<<"$err"; then bad "check --root absent: wording" "$err"; fi
run check --root "$work/node" --bundle "$work/bundle/basic.ko"
expect "check --bundle FILE" 2 "$work/bundle/basic.ko" "not one module file"
run check --root "$work/node" --bundle "$work/nobundle"
expect "check --bundle absent" 2 "$work/nobundle" "no such directory"
run check --root "$work/node" --bundle "$work/bundle" --symvers "$work/absent.symvers"
expect "check --symvers absent" 2 "$work/absent.symvers" "no such file"
# (A garbage --symvers is an error too: agent_check_realdata, on a node with a module tree.)

# ---- `agent --check` is `agent check` ---------------------------------------------------------
run check --root "$work/node" --bundle "$work/bundle"
a="$rc|$out|$err"
run --check --root "$work/node" --bundle "$work/bundle"
b="$rc|$out|$err"
if [[ $a == "$b" && $rc == 2 ]]; then ok "--check = check (same exit, output, message)"; else bad "--check = check" "'$a' vs '$b'"; fi
# build's old option names are aliases of the new ones: both parsed, the same end.
run build --root "$work/absent" --cache "$work/c" --timeout 5
a="$rc|$err"
run build --root "$work/absent" --build-cache "$work/c" --build-timeout 5
b="$rc|$err"
if [[ $a == "$b" && $rc == 2 ]] && grep -q "$work/absent" <<<"$err"; then ok "build --cache/--timeout = --build-cache/--build-timeout"; else bad "build aliases" "'$a' vs '$b'"; fi

echo "usage: $passed passed, $failed failed"
((failed == 0 && passed > 0))
