#!/usr/bin/env python3
"""The assertions of build-vm.sh on the VM's serial console (see that script).

Usage: build-check.py SERIAL NIC KVER VM_SECONDS SIGNING_CERT
SIGNING_CERT: the certificate of the key the `signed` scenario gave the agent (made by
build-vm.sh): the modules sent back over the console must carry a signature by it.
Prints what the VM saw for each scenario with a failure (status.json at the key moments, the
agent's log, the kernel's messages), the benchmark, then "PASS|FAIL <what>" lines and
"N passed, M failed". Exit 0 all passed, 1 some failed.
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

serial, nic, kver, vm_seconds, signing_cert = sys.argv[1:6]

log = serial_log.SerialLog(serial, "BVM", ("LOG", "DMESG", "NFD", "BLOGLINE", "SNAP", "JSON", "FACT", "BLOG", "EXIT",
                                          "START", "PHASE", "REACHED", "CACHESUM", "CACHE", "PROC", "KO", "ENTRY",
                                          "INSMOD", "PSRAN", "CACHEDIR", "MODB64", "TMPLEFT"))
logs, dmesg, nfd, bloglines = (log.by_tag(k) for k in ("LOG", "DMESG", "NFD", "BLOGLINE"))
snaps = {t: log.json("SNAP", t) for t in log.by_tag("SNAP")}
jsons = {t: log.json("JSON", t) for t in log.by_tag("JSON")}
facts = {t: log.kv("FACT", t) for t in log.by_tag("FACT")}
blog = {t: log.kv("BLOG", t) for t in log.by_tag("BLOG")}
exits = {t: log.exit(t) for t in log.by_tag("EXIT")}
starts = {t: int(log.kv("START", t)["pid"]) for t in log.by_tag("START")}
phases = {t: [p.split()[0] for p in v] for t, v in log.by_tag("PHASE").items()}
reached = {t: (v[-1].split()[0], serial_log.span(v[-1])) for t, v in log.by_tag("REACHED").items()}
cachesum = {t: v[-1].strip() for t, v in log.by_tag("CACHESUM").items()}
cache = log.by_tag("CACHE")
procs = {t: [p.strip() for p in v] for t, v in log.by_tag("PROC").items()}
kos = {}
for tag, v in log.by_tag("KO").items():
    for rest in v:  # "NAME BUILD_ID [SHA256] PATH"
        name, _, rest = rest.partition(" ")
        bid, _, rest = rest.partition(" ")
        parts = rest.split()
        kos.setdefault(tag, {})[name] = {"build_id": bid, "sha256": parts[0] if len(parts) == 2 else None,
                                         "path": parts[-1] if parts else ""}
entries = {t: [e.strip() for e in v] for t, v in log.by_tag("ENTRY").items()}
inserts = {t: int(v[-1]) for t, v in log.by_tag("INSMOD").items() if v[-1].strip().isdigit()}
psran = {t: int(log.kv("PSRAN", t)["procs"]) for t in log.by_tag("PSRAN")}
cachedir = {t: log.kv("CACHEDIR", t).get("exists") == "1" for t in log.by_tag("CACHEDIR")}
modb64 = {t: [x.strip() for x in v] for t, v in log.by_tag("MODB64").items()}
tmpleft = {t: v[-1].strip() for t, v in log.by_tag("TMPLEFT").items()}
begin = log.begin[0] if log.begin else None

checks = serial_log.Checks()


def check(scenario, ok, what):
    checks.add(ok, what, scenario)


RUN_OF = {"whole": "whole", "whole-stopped": "whole", "restart": "restart", "broken1": "broken1",
          "broken2": "broken2", "sigterm-before": "sigterm", "sigterm": "sigterm"}


def st(tag):
    """status.json at TAG, {} when none, unreadable or an earlier agent's (another pid)."""
    s = snaps.get(tag)
    if not isinstance(s, dict) or "_error" in s:
        return {}
    run = RUN_OF.get(tag)
    if run in starts and s.get("pid") != starts[run]:
        return {}
    return s


def summary(tag):
    s = snaps.get(tag)
    if s is None:
        return "no status.json"
    if "_error" in s:
        return s["_error"]
    if not st(tag):
        return "a stale status.json (pid %s, phase %s)" % (s.get("pid"), s.get("phase"))
    return "phase %s, decision %s, source %s" % (s.get("phase"), s.get("decision"), s.get("source"))


def build(tag):
    b = st(tag).get("build")
    return b if isinstance(b, dict) else {}


def f(tag, key):
    return facts.get(tag, {}).get(key)


def codes(tag):
    return [r.get("code") for r in st(tag).get("reasons") or [] if isinstance(r, dict)]


def rc(tag):
    return exits.get(tag, (None, None))[0]


def took(tag):
    return exits.get(tag, (None, None))[1]


def entry_files(tag, entry_rel):
    """Files of cache entry <kver>/<key> in the CACHE listing of TAG (names only)."""
    out = []
    for l in cache.get(tag, []):
        p = l.split()[0]
        if p.startswith(entry_rel + "/"):
            out.append(p[len(entry_rel) + 1:])
    return out


def ran_dkms(tag):
    """The agent's log of run TAG says it started dkms ("building <pkg> for <kver> (-jN), log ...")."""
    return any(re.search(r"building \S+ for \S+ \(-j\d+\), log ", l) for l in logs.get(tag, []))


def no_dkms(tag):
    """The agent's log of run TAG is there (the VM printed it) and shows no dkms run."""
    return bool(logs.get(tag)) and not ran_dkms(tag)


def no_procs(tag):
    """ps ran at TAG (it saw processes) and none of them is a build's."""
    return psran.get(tag, 0) > 0 and not procs.get(tag)


BUNDLE = ("agent_test_helper", "agent_test_nic")
BUILDS = "/var/lib/intel-gpu-driver/builds"
check("vm", begin == kver and log.ended, "the VM booted %s and ran to the end (BVM BEGIN %s): %s" %
      (kver, begin, log.problem() or "BVM END"))

# ---- whole-flow ------------------------------------------------------------------------------
s, b = st("whole"), build("whole")
ph = phases.get("whole", [])
end_phase, wall = reached.get("whole", (None, None))
check("whole-flow", "building" in ph and end_phase == "ready" and s.get("phase") == "ready",
      "whole-flow: phases %s (expected building ... ready), then %s" % (" -> ".join(ph) or "none", summary("whole")))
check("whole-flow", s.get("decision") == "build" and s.get("source") == "built" and b.get("result") == "built" and
      b.get("mode") == "node" and isinstance(b.get("build_seconds"), (int, float)) and b.get("build_seconds") > 0,
      "whole-flow: decision %s, source %s, build.mode %s, build.result %s, build.build_seconds %s; expected build, built, "
      "node, built, > 0" % (s.get("decision"), s.get("source"), b.get("mode"), b.get("result"), b.get("build_seconds")))
devs = [d for d in s.get("devices") or [] if isinstance(d, dict) and d.get("bdf") == nic]
check("whole-flow", f("whole", "driver") == "agent_test_nic" and f("whole", "ready") == "1" and
      bool(devs) and devs[0].get("bound") is True,
      "whole-flow: %s bound to %s (sysfs), status bound %s, ready file %s" %
      (nic, f("whole", "driver"), devs[0].get("bound") if devs else None, f("whole", "ready")))
ents = entries.get("whole", [])
key = b.get("key") or ""
entry = b.get("entry") or ""
rel = "%s/%s" % (kver, key)
files = entry_files("whole", rel)
check("whole-flow", key and entry == "%s/%s" % (BUILDS, rel) and entry in ents and
      {"result.json", "build.log", "agent_test_helper.ko", "agent_test_nic.ko"} <= set(files) and
      (b.get("log") or "").startswith(entry + "/"),
      "whole-flow: build.entry %s = %s/<kver>/<key %s> (entries in the cache: %s), holding %s, build.log %s" %
      (entry, BUILDS, key[:12], ents, sorted(files), b.get("log")))
wk = kos.get("whole", {})
mods = {m.get("name"): m for m in s.get("modules") or [] if isinstance(m, dict)}
same_id = all(wk.get(n, {}).get("build_id") and wk[n]["build_id"] == f("whole", {"agent_test_helper": "helper_id",
                                                                                    "agent_test_nic": "nic_id"}[n])
              for n in BUNDLE)
same_sha = all(wk.get(n, {}).get("sha256") and mods.get(n, {}).get("sha256") == wk[n]["sha256"] and
               mods.get(n, {}).get("live") is True for n in BUNDLE)
check("whole-flow", same_id and same_sha and all(wk.get(n, {}).get("path", "").startswith(entry + "/") for n in BUNDLE),
      "whole-flow: the live modules are the cached files: build ids %s (live %s / %s), sha256 = status.modules[] %s" %
      ({n: wk.get(n, {}).get("build_id") for n in BUNDLE}, f("whole", "helper_id"), f("whole", "nic_id"), same_sha))
check("whole-flow", ran_dkms("whole"), "whole-flow: the agent's log shows its dkms run: %s" % ran_dkms("whole"))
tmp = [l for l in cache.get("whole", []) if "/.tmp-" in "/" + l.split()[0]]
check("whole-flow", bool(cache.get("whole")) and not tmp,
      "whole-flow: no .tmp-* left in the cache (of %d entries listed): %s" % (len(cache.get("whole", [])), tmp or "none"))

# ---- restart ---------------------------------------------------------------------------------
check("restart", rc("whole") == 0 and st("whole-stopped").get("phase") == "stopping",
      "restart: SIGTERM of the first agent: exit %s, %s; expected 0, stopping" % (rc("whole"), summary("whole-stopped")))
s, b = st("restart"), build("restart")
check("restart", reached.get("restart", (None,))[0] == "ready" and s.get("phase") == "ready" and
      f("restart", "driver") == "agent_test_nic" and f("restart", "helper_id") == f("whole", "helper_id") and
      f("restart", "nic_id") == f("whole", "nic_id"),
      "restart: %s (phases %s), %s bound to %s, the same live build ids" %
      (summary("restart"), " -> ".join(phases.get("restart", [])), nic, f("restart", "driver")))
check("restart", (b.get("result") == "cached" or s.get("fast_path") is True) and s.get("source") == "built" and
      b.get("build_seconds") in (0, 0.0) and cachedir.get("restart") and cachesum.get("restart") and
      cachesum.get("restart") == cachesum.get("whole") and ran_dkms("whole") and no_dkms("restart"),
      "restart: no build: build.result %s, fast_path %s, source %s, build_seconds %s, the cache directory %s, "
      "a dkms run in the log: %s" % (b.get("result"), s.get("fast_path"), s.get("source"), b.get("build_seconds"),
                                     "unchanged" if cachesum.get("restart") == cachesum.get("whole") else "CHANGED",
                                     ran_dkms("restart")))
check("restart", rc("restart") == 0 and rc("unload") == 0 and f("unload", "helper") == "0" and f("unload", "nic") == "0",
      "restart: SIGTERM exit %s, then `agent unload` exit %s, modules gone (helper %s, nic %s)" %
      (rc("restart"), rc("unload"), f("unload", "helper"), f("unload", "nic")))

# ---- agent-build (the build command, on the entrypoint's cache) ------------------------------
j1, j2 = jsons.get("ab1") or {}, jsons.get("ab2") or {}
names1 = sorted(m.get("name") for m in j1.get("modules") or [] if isinstance(m, dict))
# The expected result from the cache as the VM's filesystem showed it just before (not from the
# agent's own reports): one entry with a result.json is these inputs' (cached, its directory name
# the key); none: built.
pre = entries.get("pre-ab", [])
whole_key = pre[0].rsplit("/", 1)[-1] if len(pre) == 1 else None
want1 = "cached" if whole_key else "built"
check("agent-build", cachedir.get("pre-ab") and len(pre) <= 1,
      "agent-build: the cache before it: %s (at most one successful entry)" % (pre if cachedir.get("pre-ab") else
                                                                               "NOT listed"))
check("agent-build", rc("ab1") == 0 and j1.get("result") == want1 and j1.get("kernel") == kver and
      names1 == list(BUNDLE) and (not whole_key or j1.get("key") == whole_key),
      "agent-build: `agent build --json` exit %s, result %s, kernel %s, modules %s, key %s; expected 0, %s (%s), %s, "
      "both%s" % (rc("ab1"), j1.get("result"), j1.get("kernel"), names1, (j1.get("key") or "")[:12], want1,
                  "the entrypoint built this key" if whole_key else "the entrypoint built nothing", kver,
                  ", the entrypoint's key %s" % whole_key[:12] if whole_key else ""))
check("agent-build", (j1.get("compiler") or {}).get("matches_kernel") is True and j1.get("log"),
      "agent-build: compiler %s (matches the kernel's: %s), log %s" %
      ((j1.get("compiler") or {}).get("used"), (j1.get("compiler") or {}).get("matches_kernel"), j1.get("log")))
check("agent-build", rc("ab2") == 0 and j2.get("result") == "cached" and j2.get("key") == j1.get("key") and
      j2.get("build_seconds") in (0, 0.0),
      "agent-build: a second run exit %s, result %s, same key %s, build_seconds %s" %
      (rc("ab2"), j2.get("result"), j2.get("key") == j1.get("key"), j2.get("build_seconds")))
ab = kos.get("ab", {})
check("agent-build", inserts.get("ab-agent_test_helper") == 0 and inserts.get("ab-agent_test_nic") == 0 and
      f("ab", "driver") == "agent_test_nic" and
      f("ab", "helper_id") == (ab.get("agent_test_helper") or {}).get("build_id") and
      f("ab", "nic_id") == (ab.get("agent_test_nic") or {}).get("build_id") and f("ab", "helper_id"),
      "agent-build: its modules insert (%s, %s), %s bound to %s, live build ids = the files' (%s, %s)" %
      (inserts.get("ab-agent_test_helper"), inserts.get("ab-agent_test_nic"), nic, f("ab", "driver"),
       f("ab", "helper_id") == (ab.get("agent_test_helper") or {}).get("build_id"),
       f("ab", "nic_id") == (ab.get("agent_test_nic") or {}).get("build_id")))
check("agent-build", f("ab-removed", "helper") == "0" and f("ab-removed", "nic") == "0",
      "agent-build: removed again (helper %s, nic %s)" % (f("ab-removed", "helper"), f("ab-removed", "nic")))

# ---- compile-failure -------------------------------------------------------------------------
s, b = st("broken1"), build("broken1")
bl = blog.get("broken1", {})
check("compile-failure", s.get("phase") == "refused" and "build_failed" in codes("broken1") and
      b.get("result") == "failed" and b.get("reason") == "build_failed",
      "compile-failure: %s, reasons %s, build.result %s, build.reason %s; expected refused, build_failed, failed" %
      (summary("broken1"), codes("broken1"), b.get("result"), b.get("reason")))
check("compile-failure", bl.get("exists") == "1" and bl.get("path") == b.get("log") and
      (b.get("log") or "").startswith(BUILDS + "/%s/" % kver) and int(bl.get("error") or 0) > 0,
      "compile-failure: build.log %s exists in the VM (%s) with the compiler's error: %s" %
      (b.get("log"), bl.get("exists"), (bloglines.get("broken1") or ["no error line"])[0].strip()[:200]))
check("compile-failure", f("broken1", "helper") == "0" and f("broken1", "nic") == "0" and f("broken1", "ready") == "0",
      "compile-failure: nothing loaded (helper %s, nic %s), no ready file (%s)" %
      (f("broken1", "helper"), f("broken1", "nic"), f("broken1", "ready")))
s2, b2 = st("broken2"), build("broken2")
bl2 = blog.get("broken2", {})
check("compile-failure", s2.get("phase") == "refused" and "build_failed" in codes("broken2") and
      b2.get("result") == "failed" and b2.get("log") == b.get("log"),
      "compile-failure: a second run: %s, reasons %s, build.result %s, the same log %s" %
      (summary("broken2"), codes("broken2"), b2.get("result"), b2.get("log") == b.get("log")))
check("compile-failure", bl2.get("md5") and bl2.get("md5") == bl.get("md5") and bl2.get("sum") == bl.get("sum") and
      cachedir.get("broken2") and cachesum.get("broken2") == cachesum.get("broken1") and
      b2.get("build_seconds") in (0, 0.0) and no_procs("broken2") and ran_dkms("broken1") and no_dkms("broken2"),
      "compile-failure: not retried: the log %s, the cache directory %s, build_seconds %s, build processes %s, "
      "a dkms run in the agent's log: %s (the first run: %s)" %
      ("untouched" if bl2.get("md5") == bl.get("md5") and bl2.get("sum") == bl.get("sum") else "CHANGED",
       "unchanged" if cachesum.get("broken2") == cachesum.get("broken1") else "CHANGED", b2.get("build_seconds"),
       procs.get("broken2") or "none", ran_dkms("broken2"), ran_dkms("broken1")))

# ---- sigterm during the build ----------------------------------------------------------------
ph = phases.get("sigterm", [])
check("sigterm-build", "building" in ph and procs.get("sigterm-before") and
      st("sigterm-before").get("phase") == "building",
      "sigterm-build: SIGTERM while building: phases %s, %s, the build running: %s" %
      (" -> ".join(ph) or "none", summary("sigterm-before"), (procs.get("sigterm-before") or ["nothing"])[:4]))
check("sigterm-build", rc("sigterm") == 0 and took("sigterm") is not None and took("sigterm") <= 10 and
      st("sigterm").get("phase") == "stopping",
      "sigterm-build: exit %s after %s s (at most 10), %s; expected 0, stopping" %
      (rc("sigterm"), "?" if took("sigterm") is None else "%.1f" % took("sigterm"), summary("sigterm")))
left = [l for l in cache.get("sigterm", []) if "/" in l.split()[0] or ".tmp-" in l]
check("sigterm-build", cachedir.get("sigterm") and not left and no_procs("sigterm") and "sigterm" in tmpleft and
      not tmpleft.get("sigterm"),
      "sigterm-build: nothing half-written in the cache (%s), build processes left: %s, temporary directories left: %s" %
      (left or "nothing", procs.get("sigterm") or "none", tmpleft.get("sigterm") or "none"))

# ---- signed: the modules carry a signature by the test's certificate --------------------------
js = jsons.get("signed") or {}
signer = js.get("signer") if isinstance(js.get("signer"), dict) else {}
check("signed", rc("signed") == 0 and js.get("result") == "built" and "agent build-vm signing" in str(signer.get("name")),
      "signed: `agent build --signing-key --signing-cert` exit %s, result %s, signer %s; expected 0, built, the "
      "test's certificate" % (rc("signed"), js.get("result"), js.get("signer")))
sigs = []
with tempfile.TemporaryDirectory() as tmpd:
    for n in BUNDLE:
        path = os.path.join(tmpd, n + ".ko")
        try:
            data = base64.b64decode("".join(modb64.get(n, [])), validate=True)
        except ValueError as e:
            sigs.append("%s: bad base64 (%s)" % (n, e))
            continue
        if not data:
            sigs.append("%s: not sent" % n)
            continue
        with open(path, "wb") as out:
            out.write(data)
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "modsig-check.py"),
                            signing_cert, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sigs.append("%s: %s" % (n, r.stdout.decode(errors="replace").strip().replace(tmpd + "/", "")))
        if r.returncode != 0:
            sigs[-1] += " (exit %d)" % r.returncode
sk = kos.get("signed", {})
check("signed", len(sigs) == len(BUNDLE) and all(": SIGNED " in x and "exit" not in x for x in sigs),
      "signed: each module, read back from the VM, carries a PKCS#7 signature by the test's certificate "
      "(modsig-check.py, openssl cms -verify): %s" % sigs)
check("signed", inserts.get("signed-agent_test_helper") == 0 and inserts.get("signed-agent_test_nic") == 0 and
      f("signed", "driver") == "agent_test_nic" and f("signed", "helper_id") and
      f("signed", "helper_id") == (sk.get("agent_test_helper") or {}).get("build_id") and
      f("signed", "nic_id") == (sk.get("agent_test_nic") or {}).get("build_id"),
      "signed: the signed files insert (%s, %s; the kernel accepted the signature's format, a malformed one is "
      "EBADMSG), %s bound to %s, live build ids = the files' (%s, %s)" %
      (inserts.get("signed-agent_test_helper"), inserts.get("signed-agent_test_nic"), nic, f("signed", "driver"),
       f("signed", "helper_id"), f("signed", "nic_id")))
check("signed", f("signed-removed", "helper") == "0" and f("signed-removed", "nic") == "0",
      "signed: removed again (helper %s, nic %s)" % (f("signed-removed", "helper"), f("signed-removed", "nic")))

# ---- output ----------------------------------------------------------------------------------
DEBUG = {  # scenario -> (snapshots, agent logs, kernel messages)
    "vm": ([], [], []),
    "agent-build": ([], ["ab1"], ["ab"]),
    "whole-flow": (["whole"], ["whole"], ["whole"]),
    "restart": (["whole-stopped", "restart"], ["whole", "restart", "unload"], ["restart"]),
    "compile-failure": (["broken1", "broken2"], ["broken1", "broken2"], ["broken"]),
    "sigterm-build": (["sigterm-before", "sigterm"], ["sigterm"], ["sigterm"]),
    "signed": ([], ["signed"], ["signed"]),
}
for sc in checks.failed_scenarios():
    if sc in ("agent-build", "signed"):
        for t in (("ab1", "ab2") if sc == "agent-build" else ("signed",)):
            print("--- agent build --json (%s) ---" % t)
            print(json.dumps(jsons.get(t), indent=1))
    serial_log.show_scenario(sc, *DEBUG[sc], snaps, logs, dmesg)

print("\nbenchmark (Debian %s under qemu TCG, the VM's root a real Debian 12 with gcc-12 and dkms):" % kver)
print("  agent build (%s): dkms %s s, %s s in all (jobs %s); cached: %s s" %
      (j1.get("result"), j1.get("build_seconds"), j1.get("total_seconds"), j1.get("jobs"), j2.get("total_seconds")))
t = st("whole").get("timings") or {}
print("  entrypoint, building: start to ready %s ms (status), wall clock %s s, build %s s" %
      (t.get("start_to_ready_ms"), "?" if reached.get("whole", (0, None))[1] is None else "%.1f" % reached["whole"][1],
       build("whole").get("build_seconds")))
t = st("restart").get("timings") or {}
print("  entrypoint, restart: start to ready %s ms (status), wall clock %s s" %
      (t.get("start_to_ready_ms"), "?" if reached.get("restart", (0, None))[1] is None else "%.1f" % reached["restart"][1]))
print("  compile failure: refused after %s s; again (recorded): %s s; SIGTERM during the build: exit after %s s" %
      tuple("?" if x is None else "%.1f" % x for x in
            (reached.get("broken1", (0, None))[1], reached.get("broken2", (0, None))[1], took("sigterm"))))
print("  agent build with the signing key (a fresh cache): %s s" % ("?" if took("signed") is None else "%.1f" % took("signed")))
print("  the VM: /init started %s s after the kernel (the %s KiB root unpacked from the initramfs), %s s in all" %
      (f("boot", "uptime"), f("boot", "root_kib"), vm_seconds))
print()
sys.exit(checks.summary())
