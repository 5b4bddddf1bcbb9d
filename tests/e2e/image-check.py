#!/usr/bin/env python3
"""Asserts on the serial console of tests/e2e/image-vm.sh.

    image-check.py SERIAL NIC_BDF KVER MANIFEST EXPECTED POD_SUMMARY VM_SECONDS TOTAL_SECONDS

EXPECTED: "FILE name sha256 build_id path" per bundle module, computed on the host from the
image's files (sha256sum, readelf); MANIFEST: the image's bundle-manifest.json. The agent's
status is checked against those and against sysfs as the VM printed it, never taken as the truth.
Prints PASS/FAIL lines, "N passed, M failed"; exit 1 on any failure.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

serial, nic, kver, manifest_path, expected_path, summary_path, vm_s, total_s = sys.argv[1:9]
log = serial_log.SerialLog(serial, "IVM", ("FACT", "SNAP", "PROBE", "EXIT", "NFD", "MOUNT", "MOUNTINFO", "DMESG", "START",
                                          "FWDIR", "FWPATH", "RMMOD", "LOG", "PRESTOP", "DIED", "HOSTPATH"))
manifest = json.load(open(manifest_path))
files = {}
for l in open(expected_path):
    _, name, sha, bid, path = l.split()
    files[name] = {"sha256": sha, "build_id": bid, "path": path}
summary = json.load(open(summary_path))

checks = serial_log.Checks(echo=True)
shown = set()


def check(what, ok, tag=None, detail=""):
    if checks.add(ok, what, tag, detail) or not tag or tag in shown:
        return
    shown.add(tag)  # what the VM saw in that scenario
    for kind, text in log.records:
        if text.split(" ", 1)[0] == tag:
            print("    | " + ("%s %s" % (kind, text))[:400])


def kv(rest):
    return dict(re.findall(r"(\w+)=(\S*)", rest))


facts = {t: log.kv("FACT", t) for t in log.by_tag("FACT")}
snaps = {t: v if isinstance(v, dict) and "_error" not in v else None
         for t, v in ((t, log.json("SNAP", t)) for t in log.by_tag("SNAP"))}
probes = {t: [kv(r.split(" out=")[0]) | {"out": r.partition(" out=")[2]} for r in v]
          for t, v in log.by_tag("PROBE").items()}
exits = {t: {"rc": v[-1].split()[0]} | kv(v[-1]) for t, v in log.by_tag("EXIT").items() if v[-1].split()}
nfd, dmesg = log.by_tag("NFD"), log.by_tag("DMESG")
mounts = {t: v[-1] for t, v in log.by_tag("MOUNT").items()}
fwpath = {t: v[-1] for t, v in log.by_tag("FWPATH").items()}
starts = {t: float(kv(v[-1])["t"]) for t, v in log.by_tag("START").items()}
fwdir = log.tagged("FWDIR", "first")
rmmod = kv(log.texts("RMMOD")[-1]) if log.texts("RMMOD") else None

checks.whole(log)

# ---- the image's manifest, against the image's files ---------------------------------------------
mods = {m["name"]: m for m in manifest.get("modules", [])}
check("the manifest lists the bundle's modules (agent_test_helper, agent_test_nic)",
      set(mods) == set(files) == {"agent_test_helper", "agent_test_nic"}, detail=f"{sorted(mods)} vs files {sorted(files)}")
for name, f in files.items():
    m = mods.get(name, {})
    check(f"manifest: {name} sha256 is the file's (sha256sum)", m.get("sha256") == f["sha256"], detail=f"{m.get('sha256')} vs {f['sha256']}")
    check(f"manifest: {name} build id is the file's (readelf)", m.get("build_id") == f["build_id"] and len(f["build_id"]) == 40)
    check(f"manifest: {name} vermagic names {kver}", m.get("vermagic", "").startswith(kver + " "))
check(f"manifest: built for {kver}", manifest.get("kernel", {}).get("release") == kver)
src = manifest.get("sources", {})
check("manifest: sources agent-test-driver 1.0 with a sha256 digest",
      src.get("name") == "agent-test-driver" and src.get("version") == "1.0" and re.fullmatch(r"[0-9a-f]{64}", src.get("digest", "")))
check("the pod's mounts: / read-only at /host (rslave), the nested writable mounts after it",
      summary["mounts"][0] == ["/", "/host", "rbind,rslave,ro"] and
      all(m[2].endswith(",rw") for m in summary["mounts"][1:]))

# ---- before: nothing ------------------------------------------------------------------------------
b = facts.get("before", {})
check("before: the NIC not bound to agent_test_nic, no module", b.get("driver") != "agent_test_nic" and b.get("nic") == "0", "before")
pb = probes.get("before", [{}])[0]
check("before: the readinessProbe fails (no state)", pb.get("rc") not in (None, "0"), "before", str(pb))

# ---- first start ------------------------------------------------------------------------------------
pf = probes.get("first", [])
first_ok = next((i for i, p in enumerate(pf) if p["rc"] == "0"), None)
check("first: the readinessProbe passes in the end", first_ok is not None, "first")
check("first: the readinessProbe failed before the agent was ready (observed at least once)",
      first_ok is not None and first_ok > 0 and all(p["rc"] != "0" for p in pf[:first_ok]), "first",
      f"{len(pf[:first_ok or 0])} failing probe(s) before the first pass")
check("first: every passing probe saw the ready file and phase ready",
      all(p["ready"] == "1" and p["phase"] == "ready" for p in pf if p["rc"] == "0"), "first")
check("first: every failing probe saw a state that was not ready yet",
      all(not (p["ready"] == "1" and p["phase"] == "ready") or i == first_ok - 1 for i, p in enumerate(pf) if p["rc"] != "0"), "first")
f = facts.get("first", {})
check(f"first: {nic} bound to agent_test_nic (sysfs)", f.get("driver") == "agent_test_nic", "first", str(f))
for name, short in (("agent_test_helper", "helper"), ("agent_test_nic", "nic")):
    check(f"first: live {name}'s build id (/sys/module/{name}/notes) is the image file's and the manifest's",
          f.get(short + "_id") == files.get(name, {}).get("build_id") == mods.get(name, {}).get("build_id"), "first",
          f"{f.get(short + '_id')} vs {files.get(name, {}).get('build_id')}")
s = snaps.get("first") or {}
check("first: status phase ready, decision prebuilt", s.get("phase") == "ready" and s.get("decision") == "prebuilt", "first")
bm = s.get("bundle_manifest") or {}
check("first: status.bundle_manifest carries the manifest's sources version and digest",
      bm.get("sources", {}).get("version") == src.get("version") and bm.get("sources", {}).get("digest") == src.get("digest")
      and bm.get("kernel") == kver, "first", str(bm))
labels = dict(l.split("=", 1) for l in nfd.get("first", []) if "=" in l)
check("first: the NFD labels carry the sources version and digest",
      labels.get("intel-gpu-driver.sources-version") == src.get("version") and
      labels.get("intel-gpu-driver.sources-digest") == src.get("digest", "")[:16], "first", str(labels))
check("first: firmware copied through the nested /host/var/lib/intel-gpu-driver mount, firmware_class.path set",
      fwpath.get("first", "").startswith("/var/lib/intel-gpu-driver/firmware/") and len(fwdir) > 0, "first",
      fwpath.get("first", ""))
check("first: the driver's probe ran (its kernel log line: the positive control for restart)",
      any("agent_test_nic" in l for l in dmesg.get("first", [])), "first")
check("first: /host is read-only in the container", mounts.get("/host") == "read-only", "first", str(mounts))
check("first: /host/var/lib/intel-gpu-driver is writable (nested hostPath)", mounts.get("/host/var/lib/intel-gpu-driver") == "writable")
check("first: firmware_class.path is writable through /host", mounts.get("fwpath-param") == "writable")
check("first: /run/intel-gpu-driver is writable", mounts.get("/run/intel-gpu-driver") == "writable")
# What the README says of the read-only bind of /: read-only only for /'s own filesystem; the
# host's submounts (/sys here) stay as they are in the rbind.
for l in log.texts("MOUNTINFO"):
    if " /host/sys " in l:
        print("NOTE /host/sys in the container: " + " ".join(l.split()[4:6]) + " (the read-only bind of / is not recursive)")
if first_ok is not None and "first" in starts:
    print(f"BENCH pod start to readinessProbe pass: {float(pf[first_ok]['t']) - starts['first']:.2f} s")

# ---- stop: SIGTERM within the grace period -------------------------------------------------------
grace = 30
e = exits.get("stop", {})
check("stop: exit 0 within terminationGracePeriodSeconds", e.get("rc") == "0" and float(e.get("t", 1e9)) - float(e.get("t0", 0)) < grace,
      "stop", str(e))
fs_ = facts.get("stop", {})
check("stop: the ready file gone, the modules still loaded and bound",
      fs_.get("ready") == "0" and fs_.get("nic") == "1" and fs_.get("helper") == "1" and fs_.get("driver") == "agent_test_nic", "stop", str(fs_))
check("stop: status phase stopping", (snaps.get("stop") or {}).get("phase") == "stopping", "stop")

# ---- restart: the fast path ----------------------------------------------------------------------
pr = probes.get("restart", [])
check("restart: the readinessProbe passes", any(p["rc"] == "0" for p in pr), "restart")
sr = snaps.get("restart") or {}
check("restart: ready on the fast path", sr.get("phase") == "ready" and sr.get("fast_path") is True, "restart", str(sr.get("fast_path")))
fr = facts.get("restart", {})
check("restart: the same live build ids, nothing reinserted (no driver probe line in the kernel log)",
      fr.get("nic_id") == f.get("nic_id") and fr.get("driver") == "agent_test_nic" and
      not any("agent_test_nic" in l for l in dmesg.get("restart", [])), "restart")
if pr and "restart" in starts:
    ok = next((p for p in pr if p["rc"] == "0"), None)
    if ok:
        print(f"BENCH restart to readinessProbe pass: {float(ok['t']) - starts['restart']:.2f} s")

# ---- killed: a stale ready file ------------------------------------------------------------------
ek = exits.get("killed", {})
check("killed: the container died of SIGKILL", ek.get("rc") not in (None, "0", "hung"), "killed", str(ek))
fk = facts.get("killed", {})
check("killed: the stale ready file is still there (the probe's data)", fk.get("ready") == "1", "killed", str(fk))
pk = probes.get("killed", [{}])[0]
check("killed: the readinessProbe fails on the stale ready file", pk.get("rc") not in (None, "0"), "killed", str(pk))

# ---- tampered: refused by the manifest ------------------------------------------------------------
check("tampered: the modules were removed first", (rmmod or {}).get("rc") == "0", "tampered")
st = snaps.get("tampered") or {}
codes = [r.get("code") for r in st.get("reasons", [])]
check("tampered: refused with bundle_manifest_mismatch", st.get("phase") == "refused" and "bundle_manifest_mismatch" in codes,
      "tampered", f"{st.get('phase')} {codes}")
ft = facts.get("tampered", {})
check("tampered: nothing loaded, the NIC not bound to agent_test_nic, no ready file (the killed pod's is gone)",
      ft.get("nic") == "0" and ft.get("helper") == "0" and ft.get("driver") != "agent_test_nic" and ft.get("ready") == "0",
      "tampered", str(ft))
ptk = probes.get("tampered", [{}])[0]
check("tampered: the readinessProbe fails", ptk.get("rc") not in (None, "0"), "tampered")
check("tampered: stopped with exit 0", exits.get("tampered", {}).get("rc") == "0", "tampered")

print(f"BENCH image-vm: VM {vm_s} s, total {total_s} s")
sys.exit(checks.summary())
