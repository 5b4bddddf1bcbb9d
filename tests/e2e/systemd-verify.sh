#!/usr/bin/env bash
# Lints systemd/intel-gpu-driver.service with this machine's systemd: `systemd-analyze verify`
# in a scratch root that holds the unit at /etc/systemd/system, the agent binary at the path
# ExecStart= names, and this machine's own units (sysinit.target & co, for its dependencies).
# verify exits 0 on a bad value it ignores ("Failed to parse service type, ignoring"), so any
# line it prints fails too. Then the options systemd parsed, as `systemd-analyze security`
# reads them: the sandbox must be in force and must still allow loading modules.
#   systemd-verify.sh AGENT
# Exit 0 clean, 1 not, 2 bad setup.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UNIT=$HERE/../../systemd/intel-gpu-driver.service
agent=${1:?usage: systemd-verify.sh AGENT}
[[ -x $agent ]] || { echo "systemd-verify: no agent at $agent" >&2; exit 2; }
command -v systemd-analyze >/dev/null || { echo "systemd-verify: no systemd-analyze (apt-get install systemd)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-systemd-verify.XXXXXX")
trap 'rm -rf "$work"' EXIT
exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$UNIT")
[[ $exe == /* ]] || { echo "systemd-verify: ExecStart= names no absolute path ($exe)" >&2; exit 1; }
mkdir -p "$work$(dirname "$exe")" "$work/etc/systemd/system" "$work/usr/lib/systemd"
cp "$agent" "$work$exe"
cp "$UNIT" "$work/etc/systemd/system/"
cp -a /usr/lib/systemd/system "$work/usr/lib/systemd/"

fail=0
out=$(systemd-analyze verify --root="$work" /etc/systemd/system/intel-gpu-driver.service 2>&1) || fail=1
if [[ -n $out ]]; then
  printf 'systemd-verify: %s\n' "$out"
  fail=1
fi
# The executable must be there for verify to pass: without it, it must fail (the check works).
rm "$work$exe"
if systemd-analyze verify --root="$work" /etc/systemd/system/intel-gpu-driver.service >/dev/null 2>&1; then
  echo "systemd-verify: verify passes without the agent binary: it checks nothing"
  fail=1
fi

# What systemd made of the sandbox (its own parser, not a grep of the file).
cp "$agent" "$work$exe"
sec=$(systemd-analyze security --offline=true --root="$work" --no-pager intel-gpu-driver.service 2>&1) || true
want() { # want PATTERN WHY: a line of `systemd-analyze security` that must be there
  if ! grep -qE "$1" <<<"$sec"; then echo "systemd-verify: FAIL $2 (no /$1/ in systemd-analyze security)"; fail=1; fi
}
want '✓ .*NoNewPrivileges=' "NoNewPrivileges on"
want '✓ .*ProtectSystem=' "ProtectSystem strict"
want '✓ .*PrivateTmp=' "PrivateTmp on"
want '✓ .*ProtectKernelTunables=' "ProtectKernelTunables on"
want '✗ .*ProtectKernelModules=' "ProtectKernelModules off (the agent loads modules)"
want '✗ .*CapabilityBoundingSet=~CAP_SYS_MODULE' "CAP_SYS_MODULE kept"
want '✓ .*CapabilityBoundingSet=~CAP_NET_ADMIN' "CAP_NET_ADMIN dropped"
want '✓ .*RestrictAddressFamilies=~AF_\(INET\|INET6\)' "no AF_INET, AF_INET6"
want '✓ .*SystemCallFilter=~@clock' "@clock filtered"
echo "$sec" | tail -1
if ((fail)); then echo "systemd-verify: FAIL"; exit 1; fi
echo "systemd-verify: PASS (systemd-analyze verify clean; sandbox as meant)"
