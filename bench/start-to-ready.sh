#!/usr/bin/env bash
# Benchmark: the entrypoint's start to ready beside the kernel's own time, in ONE boot of a real
# Debian kernel under qemu (TCG), on a busybox initramfs that is a small real host (vm_host_root,
# as lifecycle-vm.sh: the agent and its libraries, pci.ids, the kernel's module tree with e1000
# and its indexes made again by depmod for the files present, the headers, the kernel image).
# Two bundles, in turn:
#   test    the test driver set (tests/fixtures/kmod-src: agent_test_helper, agent_test_nic)
#           built for -p's kABI, at /opt/lib/modules/<kver of -p>, its firmware at /opt/lib/firmware
#   e1000   Debian's own e1000.ko of -p's kernel, the bundle for qemu's Intel e1000 NIC
# and per bundle N alternating runs (tests/e2e/vm/bench-init.sh) of:
#   floor   insmod of the bundle's files in dependency order until the NIC is bound to the
#           driver (firmware_class.path at the bundle's firmware), then rmmod
#   first   `agent run --nfd-dir ... --bundle ...` (the entrypoint as lifecycle-init.sh starts
#           it) until its ready file exists; SIGTERM
#   fast    the same again with the modules live (the fast path) until ready; SIGTERM, `agent
#           unload`, so that the next first load is one again
# then `agent --check` of the bundle, and one first load and one fast path under strace (file
# opens and module calls, timestamped: where the agent's wall time goes in the VM).
# Prints per-run seconds, medians, ratios vs the floor, the agent's status `timings` (medians)
# and the strace profile's largest gaps; appends a section to bench/results.md.
# Wall clock in the VM (/proc/uptime, 10 ms; polled every 10 ms). The ratios within the boot are
# the figures: absolute seconds under TCG depend on the machine's load.
#
# Usage: bench/start-to-ready.sh [-n N] [-a AGENT] [-p ABI] [-l LOG] [ABI]
#   ABI  the target kernel (default the role k61); -p the bundles' kernel (default k61_same)
# Needs root (build-bundle.sh), qemu, a static busybox, gcc, pci.ids; strace (optional, for the
# profile). Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (default 1800), BENCH_RESULTS (default
# bench/results.md; "-" for none).
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runs=5
rest=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -n) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { echo "start-to-ready: -n needs a count" >&2; exit 2; }; runs=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/../tests/e2e/vm-script.sh"
vm_args apl "${rest[@]}"
vm_kernels abi prev
vm_need agent busybox qemu gcc pci.ids
vm_root "build-bundle.sh builds in a private mount namespace"
results=${BENCH_RESULTS:-$HERE/results.md}

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")
e1000=$CACHE/$prev/modules/kernel/drivers/net/ethernet/intel/e1000/e1000.ko
[[ -f $e1000 ]] || vm_die "no e1000.ko of $prev_kver at $e1000"
echo "start-to-ready: target $kver, bundles built for $prev_kver, $runs runs each" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-bench-ready.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
vm_host_root "$root" "$kdir" "$agent" e1000
depmod -b "$root" "$kver" || vm_die "depmod -b $root $kver failed" # modules.dep of the files present
vm_bundle "$prev" "$root/opt/lib/modules/$prev_kver"
mkdir -p "$root/opt/lib/firmware" "$root/bundles/e1000" "$root/bundles/e1000-firmware" "$root/etc/modprobe.d" "$root/var/lib"
cp -r "$KMOD_SRC/firmware/agent-test" "$root/opt/lib/firmware/"
cp "$e1000" "$root/bundles/e1000/"
if command -v strace >/dev/null; then
  strace=$(command -v strace)
  mkdir -p "$root/usr/bin"
  cp -L "$strace" "$root/usr/bin/strace"
  ldd "$strace" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
    while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      [[ -e $root$lib ]] || cp -L "$lib" "$root$lib"
    done
else
  echo "start-to-ready: no strace: no profile in the VM" >&2
fi
sets="test:/opt/lib/modules/$prev_kver:/opt/lib/firmware:agent_test_helper,agent_test_nic"
sets+=" e1000:/bundles/e1000:/bundles/e1000-firmware:e1000"
vm_init "$root" bench "RUNS=$runs" "SETS=$sets"
vm_pack "$root" "$work/initrd.cpio"
vm_run "$work/initrd.cpio" 1800 "" "$runs runs per bundle"

python3 - "$SERIAL" "$results" "$kver" "$prev_kver" "$runs" <<'PY'
import json, re, statistics, sys, time
serial, results, kver, prev_kver, runs = sys.argv[1:6]
lines = open(serial, errors="replace").read().splitlines()
if not any(l.startswith("BENCHVM END") for l in lines):
    sys.stderr.write("start-to-ready: the VM did not finish; its last lines:\n" + "\n".join(lines[-40:]) + "\n")
    sys.exit(1)
bad = [l for l in lines if l.startswith("BAD ")]
t, tim = {}, {}
for l in lines:
    f = l.split()
    if f[:1] == ["BENCH"] and len(f) >= 5:
        t.setdefault((f[1], f[2]), []).append(float(f[4]))
    elif f[:1] == ["TIMINGS"] and len(f) >= 5:
        try:
            tim.setdefault((f[1], f[2]), []).append(json.loads(f[4]))
        except ValueError:
            bad.append("unreadable timings: " + l)
for l in bad:
    print(l)
med = lambda v: statistics.median(v) if v else float("nan")
names = {"floor": "floor: insmod in dependency order until the NIC is bound",
         "first": "agent first load, exec until the ready file exists",
         "fast": "agent restarted with the modules live (fast path)",
         "check": "`agent --check` (the diagnosis alone, one run)"}
phases = ["detect_ms", "insert_ms", "bind_ms", "attempt_ms", "start_to_ready_ms"]
out = []
for s, what in (("test", "the test driver set (agent_test_helper, agent_test_nic; firmware)"),
                ("e1000", "Debian's e1000.ko of " + prev_kver)):
    if (s, "floor") not in t:
        continue
    floor = med(t[(s, "floor")])
    out.append("Bundle: %s\n" % what)
    out.append("| run (same boot) | runs (s) | median s | vs floor | agent's timings, medians (ms) |")
    out.append("|---|---|---:|---:|---|")
    for k in ("floor", "first", "fast", "check"):
        v = t.get((s, k), [])
        if not v:
            continue
        ts = tim.get((s, k), [])
        ph = ", ".join("%s %d" % (p[:-3], med([x[p] for x in ts if p in x])) for p in phases
                       if any(p in x for x in ts))
        out.append("| %s | %s | %.2f | %.2fx | %s |" % (names[k], " ".join("%.2f" % x for x in v), med(v),
                                                        med(v) / floor, ph or "-"))
    out.append("")
# the strace profile: per bundle and start, the largest gaps between consecutive traced calls
prof = []
for s in ("test", "e1000"):
    for k in ("first", "fast"):
        ev = []
        for l in lines:
            f = l.split(None, 5)  # STRACE set kind pid seconds call
            if f[:3] == ["STRACE", s, k] and len(f) == 6 and re.match(r"\d+\.\d+$", f[4]):
                ev.append((float(f[4]), f[3] + " " + f[5]))
        if len(ev) < 2:
            continue
        gaps = sorted(((ev[i + 1][0] - ev[i][0], ev[i][1][:110]) for i in range(len(ev) - 1)), reverse=True)
        total = ev[-1][0] - ev[0][0]
        prof.append("%s %s under strace: %.2f s from exec to the last traced call, %d calls; largest gaps after:" % (s, k, total, len(ev)))
        prof += ["  %.3f s  %s" % g for g in gaps[:8]]
print("\n".join(out))
print("\n".join(prof))
if results != "-" and not bad:
    with open(results, "a") as r:
        r.write("\n## The entrypoint: start to ready vs the floor (%s)\n\n" % time.strftime("%Y-%m-%d", time.gmtime()))
        r.write("`bench/start-to-ready.sh`: one boot of %s under qemu TCG, bundles built for %s, %s alternating\n"
                "runs each; wall clock in the VM from exec to the ready file (floor: to the NIC bound).\n\n" % (kver, prev_kver, runs))
        r.write("\n".join(out) + "\n")
sys.exit(1 if bad else 0)
PY
