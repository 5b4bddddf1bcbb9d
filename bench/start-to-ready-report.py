#!/usr/bin/env python3
"""bench/start-to-ready.sh's report: from the VM's serial console (tests/e2e/vm/bench-init.sh's
records) the per-run seconds, medians, ratios vs the floor, the agent's status timings (medians),
process start and the profile (strace: the largest gaps between traced calls; perf: the samples'
libraries and functions); appended to RESULTS ("-" for none) when no run was bad.

usage: start-to-ready-report.py SERIAL RESULTS KVER BUNDLE_KVER RUNS
Exit: 0, 1 when the VM did not finish or a run was bad."""
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
         "cold": "agent first load with no certificates kept (first start on a new kernel image; one run)",
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
    for k in ("floor", "first", "fast", "cold", "check"):
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
st = {l.split()[1]: float(l.split()[2]) for l in lines if l.startswith("STARTUP ") and len(l.split()) == 3}
if "agent" in st:
    out.append("Process start in the VM: `agent --version` %.0f ms per exec, busybox `true` %.0f ms.\n"
               % (st["agent"] * 100, st.get("busybox", float("nan")) * 100))
for l in lines:
    if l.startswith("CERTS "):  # where `agent --check` found the kernel's certificates
        out.append(l[6:] + "\n")
for l in lines:
    if l.startswith("PERFDSO ") or l.startswith("PERF "):
        prof.append(l)
print("\n".join(out))
print("\n".join(prof))
if results != "-" and not bad:
    with open(results, "a") as r:
        r.write("\n## The entrypoint: start to ready vs the floor (%s)\n\n" % time.strftime("%Y-%m-%d", time.gmtime()))
        r.write("`bench/start-to-ready.sh`: one boot of %s under qemu TCG, bundles built for %s, %s alternating\n"
                "runs each; wall clock in the VM from exec to the ready file (floor: to the NIC bound).\n\n" % (kver, prev_kver, runs))
        r.write("\n".join(out) + "\n")
sys.exit(1 if bad else 0)
