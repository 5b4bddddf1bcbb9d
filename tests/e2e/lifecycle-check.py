#!/usr/bin/env python3
"""The assertions of lifecycle-vm.sh on the VM's serial console (see that script).

Usage: lifecycle-check.py SERIAL NIC FW_SIZE HELPER_ID NIC_ID FOREIGN_HELPER_ID KVER SIDECAR_KEY
                          SIDECAR_HELPER_ID SIDECAR_NIC_ID SIDECAR_SIGNATURES
SIDECAR_SIGNATURES: modsig-check.py's output on the sidecar's cache entry (made before the boot).
Prints the benchmark, what the VM saw for each scenario with a failure (status.json at the
key moments, the agent's log, the kernel's messages), then "PASS|FAIL <what>" lines and
"N passed, M failed". Exit 0 all passed, 1 some failed.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

serial, nic, fw_size, helper_id, nic_id, foreign_id, kver, side_key, side_helper_id, side_nic_id, side_sigs = \
    sys.argv[1:12]

log = serial_log.SerialLog(serial, "LCVM", ("LOG", "DMESG", "NFD", "FWDIR", "SNAP", "FACT", "FWPATH", "EXIT", "START",
                                            "READY", "NOTREADY", "GONE", "JOURNAL", "WATCH", "WATCHBAD", "RMMOD",
                                            "INSMOD"))
logs, dmesg, nfd, fwdir = (log.by_tag(k) for k in ("LOG", "DMESG", "NFD", "FWDIR"))
snaps = {t: serial_log.parse_json(v[-1]) for t, v in log.by_tag("SNAP").items()}
facts = {t: log.kv("FACT", t) for t in log.by_tag("FACT")}
if "rostate-files" in facts:
    facts["rostate-files"]["files"] = log.last("FACT", "rostate-files").strip()
fwpath = {t: v[-1] for t, v in log.by_tag("FWPATH").items()}
exits = {t: log.exit(t)[0] for t in log.by_tag("EXIT")}
starts = {t: (int(log.kv("START", t)["pid"]), float(log.kv("START", t)["t"])) for t in log.by_tag("START")}
ready = {t: (k == "READY", serial_log.span(v[-1])) for k in ("NOTREADY", "READY") for t, v in log.by_tag(k).items()}
gone = {t: (v[-1].split()[0] == "1", serial_log.span(v[-1])) for t, v in log.by_tag("GONE").items()}
journals = {t: j if isinstance(j, dict) and "_error" not in j else None
            for t, j in ((t, log.json("JOURNAL", t)) for t in log.by_tag("JOURNAL"))}
watch_bad = ["WATCHBAD " + t for t in log.texts("WATCHBAD")]
w = dict(kv.split("=", 1) for kv in (log.texts("WATCH") or [""])[-1].split() if "=" in kv)
watch = (int(w["checks"]), int(w["bad"])) if "checks" in w and "bad" in w else None
rm = [t for t in log.texts("RMMOD") if t.startswith("rc=")]
rmmod_rc = int(rm[-1][3:]) if rm and rm[-1][3:].isdigit() else None
inserts = {t: int(v[-1]) for t, v in log.by_tag("INSMOD").items() if v[-1].isdigit()}

checks = serial_log.Checks()


def check(scenario, ok, what):
    checks.add(ok, what, scenario)


# The agent run each snapshot was taken from: a status.json with another pid is an earlier
# agent's, left in the state directory (stale), and counts as none.
RUN_OF = {"first": "first", "sigterm": "first", "restart": "restart", "rmmod-now": "restart",
          "rmmod-later": "restart", "changed": "changed", "initfail": "initfail", "initfail-hup": "initfail",
          "foreign": "foreign", "fwconflict": "fwconflict", "swap": "swap", "sidecar": "sidecar",
          "sidecar2": "sidecar2", "sidefail": "sidefail", "sidewait-waiting": "sidewait", "sidewait": "sidewait",
          "enforced": "enforced", "untrusted": "untrusted", "earlyhup": "earlyhup", "kill9-restart": "kill9-restart",
          "readydir": "readydir", "deepjournal": "deepjournal", "deepjournal-hup": "deepjournal",
          "fsfull-hup": "fsfull", "bc-modules-string": "bc-modules-string", "bc-file-escape": "bc-file-escape",
          "bc-kernel-number": "bc-kernel-number", "bc-failed-type": "bc-failed-type", "bc-deep": "bc-deep"}


def stale(tag):
    s = snaps.get(tag)
    run = RUN_OF.get(tag)
    return isinstance(s, dict) and "_error" not in s and run in starts and s.get("pid") != starts[run][0]


def st(tag):
    s = snaps.get(tag)
    return s if isinstance(s, dict) and not stale(tag) else {}


def f(tag, key):
    return facts.get(tag, {}).get(key)


def module(tag, name):
    for m in st(tag).get("modules") or []:
        if isinstance(m, dict) and m.get("name") == name:
            return m
    return {}


def device(tag):
    for d in st(tag).get("devices") or []:
        if isinstance(d, dict) and d.get("bdf") == nic:
            return d
    return {}


def firmware(tag):
    fw = st(tag).get("firmware")
    return fw if isinstance(fw, dict) else {}


def secs_text(ok, secs):
    return "%s after %s s" % ("present" if ok else "NOT present", "?" if secs is None else "%.2f" % secs)


def pid(tag):
    return starts.get(tag, (None,))[0]


def summary(tag):
    s = snaps.get(tag)
    if s is None:
        return "no status.json"
    if stale(tag):
        return "a stale status.json (pid %s, phase %s: an earlier agent's)" % (s.get("pid"), s.get("phase"))
    if "_error" in s:
        return s["_error"]
    return "phase %s, decision %s, event %s" % (s.get("phase"), s.get("decision"), s.get("event"))


def mods(tag):
    return ", ".join("%s(inserted %s, live %s)" % (m.get("name"), m.get("inserted"), m.get("live"))
                     for m in st(tag).get("modules") or [] if isinstance(m, dict)) or "none"


def codes(tag):
    return [r.get("code") for r in st(tag).get("reasons") or [] if isinstance(r, dict)]


def build(tag):
    b = st(tag).get("build")
    return b if isinstance(b, dict) else {}


BUNDLE = ("agent_test_helper", "agent_test_nic")
if log.problem():
    checks.whole(log)

# ---- first-load ----------------------------------------------------------------------------
s = st("first")
ok, secs = ready.get("first", (False, None))
check("first", ok and s.get("phase") == "ready" and s.get("decision") == "prebuilt" and s.get("source") == "prebuilt",
      "first-load: ready file %s; %s, source %s; expected ready, prebuilt, prebuilt" %
      (secs_text(ok, secs), summary("first"), s.get("source")))
check("first", s.get("schema") == 1 and s.get("pid") == pid("first") and
      s.get("boot_id") == f("boot", "boot_id") and (s.get("kernel") or {}).get("release") == kver,
      "first-load: status schema %s, pid %s (agent %s), boot_id %s (kernel %s), kernel.release %s (%s)" %
      (s.get("schema"), s.get("pid"), pid("first"), s.get("boot_id"), f("boot", "boot_id"),
       (s.get("kernel") or {}).get("release"), kver))
# The contract's fields (schema 1), at the first ready.
KEYS = ("schema", "agent_version", "boot_id", "pid", "kernel", "phase", "decision", "source", "since", "updated",
        "devices", "modules", "reasons", "conflicts", "removed", "firmware", "failure", "event", "timings")
MODULE_KEYS = ("name", "path", "sha256", "build_id", "verdict", "errno", "errno_name", "reasons", "inserted", "live")
DEVICE_KEYS = ("bdf", "vendor", "device", "class", "driver", "bundle_modules", "bound", "drm")
FIRMWARE_KEYS = ("source_dir", "dir", "digest", "files", "previous_path", "path", "conflict")
missing = [k for k in KEYS if k not in s]
missing += ["modules[].%s" % k for m in s.get("modules") or [] if isinstance(m, dict) for k in MODULE_KEYS if k not in m]
missing += ["devices[].%s" % k for d in s.get("devices") or [] if isinstance(d, dict) for k in DEVICE_KEYS if k not in d]
missing += ["firmware.%s" % k for k in FIRMWARE_KEYS if k not in firmware("first")]
missing += ["kernel.%s" % k for k in ("release", "version") if k not in (s.get("kernel") or {})]
check("first", bool(s) and not missing and s.get("modules") and s.get("devices"),
      "first-load: status.json has every field of the contract: %s" %
      ("no status.json" if not s else "missing " + ", ".join(sorted(set(missing))) if missing else "yes"))
check("first", all(module("first", n).get("verdict") == "loadable" and module("first", n).get("inserted") is True
                   and module("first", n).get("live") is True for n in BUNDLE) and
      module("first", "agent_test_helper").get("build_id") == helper_id and
      module("first", "agent_test_nic").get("build_id") == nic_id,
      "first-load: modules[] %s, both loadable, inserted, live, with the bundle's build ids" % mods("first"))
check("first", f("first", "helper") == "1" and f("first", "nic") == "1" and f("first", "helper_id") == helper_id and
      f("first", "nic_id") == nic_id,
      "first-load: agent_test_helper and agent_test_nic live in the kernel with the bundle's build ids (%s, %s)" %
      (f("first", "helper_id"), f("first", "nic_id")))
d = device("first")
check("first", f("first", "driver") == "agent_test_nic" and d.get("driver") == "agent_test_nic" and d.get("bound") is True
      and "agent_test_nic" in (d.get("bundle_modules") or []),
      "first-load: %s bound to %s (sysfs), status: driver %s, bound %s, bundle_modules %s" %
      (nic, f("first", "driver"), d.get("driver"), d.get("bound"), d.get("bundle_modules")))
fw = firmware("first")
path = fwpath.get("first", "")
check("first", path.startswith("/var/lib/intel-gpu-driver/firmware/") and fw.get("path") == path and
      bool(fw.get("digest")) and str(fw.get("digest")) in path and "conflict" in fw and fw["conflict"] is None and
      "previous_path" in fw and fw["previous_path"] in ("", None) and fwpath.get("pre") == "",
      "first-load: firmware_class.path '%s' (was '%s') = status.firmware.path '%s' under "
      "/var/lib/intel-gpu-driver/firmware/<digest %s>, previous_path %r, conflict %r" %
      (path, fwpath.get("pre"), fw.get("path"), fw.get("digest"), fw.get("previous_path"), fw.get("conflict")))
want = "agent_test_nic %s: firmware agent-test/agent_test_nic.bin: %s bytes:" % (nic, fw_size)
line = [l for l in dmesg.get("first", []) if "firmware agent-test/agent_test_nic.bin" in l]
check("first", any(want in l for l in line),
      "first-load: the driver loaded its firmware from the agent's path: %s" % (line[-1].strip() if line else "no line"))
lines = nfd.get("first", [])
kv = dict(l.split("=", 1) for l in lines if "=" in l)
keys = lambda suffix: [v for k, v in kv.items() if re.search(r"(^|[./_-])%s$" % suffix, k)]
check("first", lines != ["-"] and all(re.match(r"^[A-Za-z0-9./_-]+=\S*$", l) for l in lines) and
      "prebuilt" in keys("source") and kver in keys("kernel") and any(keys("version")),
      "first-load: NFD file key=value lines with source=prebuilt, kernel=%s, a version: %s" % (kver, lines))
check("first", f("first", "lock") == "1" and "failure" in st("first") and not st("first")["failure"],
      "first-load: agent.lock present (%s), failure %s" % (f("first", "lock"), st("first").get("failure")))

# ---- second-agent --------------------------------------------------------------------------
log2 = " ".join(logs.get("second", []))
check("second", exits.get("second") == 2 and pid("first") is not None and str(pid("first")) in log2,
      "second-agent: exit %s (expected 2), message names the holder's pid %s: %s" %
      (exits.get("second"), pid("first"), log2[:300]))

# ---- sigterm -------------------------------------------------------------------------------
check("sigterm", exits.get("sigterm") == 0 and f("sigterm", "ready") == "0" and st("sigterm").get("phase") == "stopping",
      "sigterm: exit %s, ready file %s, %s; expected 0, gone, stopping" %
      (exits.get("sigterm"), "present" if f("sigterm", "ready") == "1" else "gone", summary("sigterm")))
check("sigterm", f("sigterm", "helper") == "1" and f("sigterm", "nic") == "1" and f("sigterm", "driver") == "agent_test_nic",
      "sigterm: the modules stay (helper %s, nic %s), %s still bound to %s" %
      (f("sigterm", "helper"), f("sigterm", "nic"), nic, f("sigterm", "driver")))

# ---- restart (fast path) -------------------------------------------------------------------
s = st("restart")
ok, secs = ready.get("restart", (False, None))
check("restart", ok and s.get("phase") == "ready" and s.get("decision") == "prebuilt" and s.get("pid") == pid("restart"),
      "restart: ready file %s; %s, pid %s (agent %s)" % (secs_text(ok, secs), summary("restart"), s.get("pid"), pid("restart")))
check("restart", all(module("restart", n).get("inserted") is False and module("restart", n).get("live") is True
                     for n in BUNDLE) and f("restart", "helper_id") == helper_id and f("restart", "nic_id") == nic_id,
      "restart: the fast path, nothing reinserted: %s; live build ids unchanged" % mods("restart"))

# ---- rmmod while ready ---------------------------------------------------------------------
ok, secs = gone.get("rmmod", (False, None))
events = [str(st(t).get("event")) for t in ("rmmod-now", "rmmod-later") if st(t).get("event")]
check("rmmod", rmmod_rc == 0 and ok and secs is not None and secs <= 5.0,
      "rmmod: agent_test_nic removed (rc %s) while ready: the ready file %s after %s s (at most 5)" %
      (rmmod_rc, "gone" if ok else "NOT gone", "?" if secs is None else "%.2f" % secs))
check("rmmod", any("agent_test_nic" in e for e in events),
      "rmmod: status.event names agent_test_nic: %s (%s; then %s)" % (events, summary("rmmod-now"), summary("rmmod-later")))
# 3 s later the status must describe the kernel as it is (the kernel's state taken just before
# and after the snapshot; judged when both agree).
later = st("rmmod-later")
kernel_nic = f("rmmod", "nic")
stable = kernel_nic is not None and f("rmmod-before", "nic") == kernel_nic and \
    f("rmmod-before", "driver") == f("rmmod", "driver")
status_nic = module("rmmod-later", "agent_test_nic").get("live")
status_drv = device("rmmod-later").get("driver")
check("rmmod", bool(later) and stable and status_nic == (kernel_nic == "1") and
      (status_drv or "-") == f("rmmod", "driver"),
      "rmmod: 3 s later status.json agrees with the kernel: agent_test_nic live %s (kernel: %s), %s driver %s "
      "(sysfs: %s)%s" % (status_nic, kernel_nic == "1", nic, status_drv, f("rmmod", "driver"),
                         "" if stable else " (the kernel changed during the snapshot)"))
check("rmmod", exits.get("rmmod") == 0, "rmmod: the agent then exits 0 on SIGTERM (%s)" % exits.get("rmmod"))

# ---- unload --------------------------------------------------------------------------------
check("unload", exits.get("unload") == 0 and f("unload", "helper") == "0" and f("unload", "nic") == "0" and
      f("unload", "driver") == "-",
      "unload: exit %s, agent_test_helper live %s, agent_test_nic live %s, %s driver %s; expected 0, gone, unbound" %
      (exits.get("unload"), f("unload", "helper"), f("unload", "nic"), nic, f("unload", "driver")))
check("unload", exits.get("unload") == 0 and "unload" in fwpath and fwpath.get("unload") == fwpath.get("pre") and
      fwpath.get("first", "").startswith("/var/lib/intel-gpu-driver/firmware/"),
      "unload: firmware_class.path '%s' restored (before the agent: '%s', set by it: '%s'), exit %s" %
      (fwpath.get("unload"), fwpath.get("pre"), fwpath.get("first"), exits.get("unload")))

# ---- changed kABI --------------------------------------------------------------------------
s = st("changed")
named = [r for m in s.get("modules") or [] if isinstance(m, dict) for r in m.get("reasons") or []
         if isinstance(r, dict) and "module_layout" in json.dumps(r)]
check("changed", s.get("phase") == "refused" and s.get("decision") == "build" and "build_disabled" in codes("changed"),
      "changed-kabi: %s, reasons %s; expected refused, decision build (the headers are there), build_disabled" %
      (summary("changed"), codes("changed")))
check("changed", bool(named) and all(module("changed", n).get("verdict") == "refused" for n in BUNDLE),
      "changed-kabi: the modules refused, module_layout named: %s" %
      ([(m.get("name"), m.get("verdict"), m.get("errno_name")) for m in s.get("modules") or [] if isinstance(m, dict)],))
check("changed", f("changed", "helper") == "0" and f("changed", "nic") == "0" and f("changed", "ready") == "0" and
      exits.get("changed") == 0,
      "changed-kabi: nothing loaded (helper %s, nic %s), no ready file (%s), exit %s on SIGTERM" %
      (f("changed", "helper"), f("changed", "nic"), f("changed", "ready"), exits.get("changed")))

# ---- sidecar: the build from the shared cache ----------------------------------------------
s = st("sidecar")
ok, secs = ready.get("sidecar", (False, None))
check("sidecar", ok and s.get("phase") == "ready" and s.get("decision") == "build" and s.get("source") == "built",
      "sidecar: ready %s; %s, source %s; expected ready, decision build, source built" %
      (secs_text(ok, secs), summary("sidecar"), s.get("source")))
b = build("sidecar")
check("sidecar", b.get("mode") == "sidecar" and b.get("result") == "cached" and b.get("key") == side_key,
      "sidecar: status.build mode %s, result %s, key %s (the sidecar's %s)" %
      (b.get("mode"), b.get("result"), b.get("key"), side_key))
check("sidecar", f("sidecar", "helper_id") == side_helper_id and f("sidecar", "nic_id") == side_nic_id and
      f("sidecar", "driver") == "agent_test_nic" and device("sidecar").get("bound") is True,
      "sidecar: the live build ids are the sidecar's (helper %s/%s, nic %s/%s), %s bound to %s" %
      (f("sidecar", "helper_id"), side_helper_id, f("sidecar", "nic_id"), side_nic_id, nic, f("sidecar", "driver")))
signer = b.get("signer") if isinstance(b.get("signer"), dict) else {}
check("sidecar", "agent test module signing" in (signer.get("name") or "") and bool(signer.get("key_id")),
      "sidecar: status.build.signer names the test key: %s" % (b.get("signer"),))
# The files, read without the agent (modsig-check.py, openssl) before the boot: both signed by
# the test certificate. The kernel took exactly these files (their build ids, above), and a
# signature whose format it cannot parse is EBADMSG even unenforced: it accepted the format.
sigs = [l.split() for l in open(side_sigs).read().splitlines()] if side_sigs else []
signed = {l[1].rsplit("/", 1)[-1] for l in sigs if len(l) >= 2 and l[0] == "SIGNED"}
check("sidecar", signed == {n + ".ko" for n in BUNDLE} and len(sigs) == len(BUNDLE) and
      f("sidecar", "helper_id") == side_helper_id and f("sidecar", "nic_id") == side_nic_id,
      "sidecar: the cache entry's modules carry a PKCS#7 signature by the test certificate (openssl cms -verify: %s) "
      "and are the files the kernel took: it accepted the signature's format" % [" ".join(l) for l in sigs])
check("sidecar", any("source=built" in l for l in nfd.get("sidecar", [])),
      "sidecar: the NFD file says source=built: %s" % nfd.get("sidecar"))
s2 = st("sidecar2")
ok2, secs2 = ready.get("sidecar2", (False, None))
check("sidecar", ok2 and s2.get("fast_path") is True and s2.get("source") == "built" and
      all(module("sidecar2", n).get("inserted") is False for n in BUNDLE) and
      f("sidecar2", "helper_id") == side_helper_id and f("sidecar2", "nic_id") == side_nic_id,
      "sidecar restart: ready %s, fast path %s, source %s, nothing reinserted: %s" %
      (secs_text(ok2, secs2), s2.get("fast_path"), s2.get("source"), mods("sidecar2")))
check("sidecar", exits.get("sidecar-unload") == 0 and f("sidecar-unload", "helper") == "0" and
      f("sidecar-unload", "nic") == "0",
      "sidecar: agent unload exit %s, the built modules gone (helper %s, nic %s)" %
      (exits.get("sidecar-unload"), f("sidecar-unload", "helper"), f("sidecar-unload", "nic")))

s = st("sidefail")
b = build("sidefail")
check("sidefail", s.get("phase") == "refused" and "build_failed" in codes("sidefail") and b.get("result") == "failed",
      "sidecar-fail: %s, reasons %s, build.result %s; expected refused, build_failed" %
      (summary("sidefail"), codes("sidefail"), b.get("result")))
check("sidefail", f("sidefail-log", "exists") == "1" and (f("sidefail-log", "error") or "0") != "0" and
      f("sidefail-log", "path") == b.get("log"),
      "sidecar-fail: the log %s exists (%s) and names the compiler's error (%s lines)" %
      (b.get("log"), f("sidefail-log", "exists"), f("sidefail-log", "error")))
check("sidefail", f("sidefail", "helper") == "0" and f("sidefail", "nic") == "0" and f("sidefail", "ready") == "0",
      "sidecar-fail: nothing loaded (helper %s, nic %s), no ready file (%s)" %
      (f("sidefail", "helper"), f("sidefail", "nic"), f("sidefail", "ready")))

check("sidewait", st("sidewait-waiting").get("phase") == "waiting-for-build" and
      st("sidewait").get("phase") == "refused" and "build_wait_timeout" in codes("sidewait"),
      "sidecar-wait: %s, then %s, reasons %s; expected waiting-for-build, then refused with build_wait_timeout" %
      (summary("sidewait-waiting"), summary("sidewait"), codes("sidewait")))

# ---- init failure + rollback ---------------------------------------------------------------
fail = st("initfail").get("failure") or {}
check("initfail", fail.get("module") == "agent_test_nic" and fail.get("errno_name") == "ENXIO" and
      isinstance(fail.get("kernel_log"), list) and len(fail.get("kernel_log")) > 0,
      "init-fail: status.failure module %s, errno_name %s, kernel_log %s; expected agent_test_nic, ENXIO, lines" %
      (fail.get("module"), fail.get("errno_name"), fail.get("kernel_log")))
kl = dmesg.get("initfail", [])
inserted_then_removed = any("agent_test_helper: loaded (bundle build)" in l for l in kl) and \
    any("agent_test_nic: fail_init=1" in l for l in kl) and any("agent_test_helper: unloaded" in l for l in kl)
check("initfail", f("initfail", "helper") == "0" and f("initfail", "nic") == "0" and f("initfail", "ready") == "0" and
      inserted_then_removed,
      "init-fail: agent_test_helper inserted, agent_test_nic's init failed, the helper removed again (kernel log: %s);"
      " now helper live %s, nic live %s, ready file %s; %s" %
      (inserted_then_removed, f("initfail", "helper"), f("initfail", "nic"), f("initfail", "ready"), summary("initfail")))
ok, secs = ready.get("initfail-hup", (False, None))
check("initfail", ok and f("initfail-hup", "nic") == "1" and f("initfail-hup", "driver") == "agent_test_nic",
      "init-fail: modprobe.d option removed + SIGHUP: ready file %s, agent_test_nic live %s, %s bound to %s; %s" %
      (secs_text(ok, secs), f("initfail-hup", "nic"), nic, f("initfail-hup", "driver"), summary("initfail-hup")))
check("initfail", exits.get("initfail") == 0 and exits.get("initfail-unload") == 0 and
      f("initfail-unload", "helper") == "0" and f("initfail-unload", "nic") == "0",
      "init-fail: SIGTERM exit %s, agent unload exit %s, modules gone (helper %s, nic %s)" %
      (exits.get("initfail"), exits.get("initfail-unload"), f("initfail-unload", "helper"), f("initfail-unload", "nic")))

# ---- foreign agent_test_helper, held -------------------------------------------------------
s = st("foreign")
conf = [c for c in s.get("conflicts") or [] if isinstance(c, dict) and c.get("name") == "agent_test_helper"]
check("foreign", inserts.get("foreign-helper") == 0 and inserts.get("foreign-holder") == 0 and
      f("foreign-pre", "helper_id") == foreign_id,
      "foreign-held: setup: the foreign agent_test_helper (%s) and agent_test_holder inserted (%s, %s)" %
      (f("foreign-pre", "helper_id"), inserts.get("foreign-helper"), inserts.get("foreign-holder")))
check("foreign", exits.get("foreign") == 20 and s.get("decision") == "refuse" and s.get("phase") == "refused",
      "foreign-held: --exit-on-refuse exit %s, %s; expected 20, refused, refuse" % (exits.get("foreign"), summary("foreign")))
check("foreign", len(conf) == 1 and "agent_test_holder" in (conf[0].get("holders") or []) and
      conf[0].get("removable") is False,
      "foreign-held: conflicts[] agent_test_helper held by agent_test_holder, not removable: %s" % conf)
check("foreign", snaps.get("foreign") is not None and f("foreign", "helper") == "1" and f("foreign", "holder") == "1" and
      f("foreign", "nic") == "0" and
      f("foreign", "helper_id") == foreign_id and f("foreign", "ready") == "0",
      "foreign-held: the foreign modules untouched (helper %s with build id %s, holder %s), agent_test_nic %s, ready %s" %
      (f("foreign", "helper"), f("foreign", "helper_id"), f("foreign", "holder"), f("foreign", "nic"),
       f("foreign", "ready")))

# ---- the kernel's own module of a bundle name, unused: swapped, then restored --------------
s = st("swap")
conf = [c for c in s.get("conflicts") or [] if isinstance(c, dict) and c.get("name") == "agent_test_helper"]
check("swap", inserts.get("intree-helper") == 0 and f("swap-pre", "helper_id") == foreign_id,
      "intree-swap: setup: the tree's agent_test_helper (%s) inserted (%s)" %
      (f("swap-pre", "helper_id"), inserts.get("intree-helper")))
ok, secs = ready.get("swap", (False, None))
check("swap", ok and s.get("removed") == ["agent_test_helper"] and len(conf) == 1 and conf[0].get("removable") is True
      and f("swap", "helper_id") == helper_id and f("swap", "driver") == "agent_test_nic",
      "intree-swap: ready file %s, status.removed %s, conflict removable %s, live helper build id %s (bundle's %s), "
      "%s bound to %s; %s" % (secs_text(ok, secs), s.get("removed"), conf[0].get("removable") if conf else None,
                              f("swap", "helper_id"), helper_id, nic, f("swap", "driver"), summary("swap")))
u = snaps.get("swap-unload") or {}
check("swap", exits.get("swap") == 0 and exits.get("swap-unload") == 0 and u.get("restored") == ["agent_test_helper"] and
      f("swap-unload", "helper") == "1" and f("swap-unload", "helper_id") == foreign_id and f("swap-unload", "nic") == "0",
      "intree-swap: SIGTERM exit %s, agent unload exit %s (removed %s, restored %s): the tree's agent_test_helper live %s "
      "with build id %s (expected %s), agent_test_nic live %s" %
      (exits.get("swap"), exits.get("swap-unload"), u.get("removed"), u.get("restored"), f("swap-unload", "helper"),
       f("swap-unload", "helper_id"), foreign_id, f("swap-unload", "nic")))

# ---- read-only state directory -------------------------------------------------------------
log_ro = " ".join(logs.get("rostate", []))
check("rostate", exits.get("rostate") == 2 and "/run/ro-state" in log_ro and "for usage" not in log_ro and
      f("rostate-dir", "dir") == "1" and f("rostate-files", "files") == ""
      and f("rostate", "ready") == "0",
      "ro-state: exit %s (expected 2), message names /run/ro-state: %s; files there: '%s'; ready file %s" %
      (exits.get("rostate"), log_ro[:300], f("rostate-files", "files"), f("rostate", "ready")))

# ---- someone else's firmware path ----------------------------------------------------------
fw = firmware("fwconflict")
check("fwconflict", fwpath.get("fwconflict") == "/elsewhere" and isinstance(fw.get("conflict"), str) and
      bool(fw.get("conflict")),
      "fw-conflict: firmware_class.path kept '%s', status.firmware.conflict %r (path %r); %s" %
      (fwpath.get("fwconflict"), fw.get("conflict"), fw.get("path"), summary("fwconflict")))
check("fwconflict", exits.get("fwconflict") == 0 and exits.get("fwconflict-unload") == 0 and
      fwpath.get("fwconflict-unload") == "/elsewhere",
      "fw-conflict: SIGTERM exit %s, unload exit %s, the path still '%s' after the unload" %
      (exits.get("fwconflict"), exits.get("fwconflict-unload"), fwpath.get("fwconflict-unload")))

# ---- Driver Toolkit headers: used only when proven the running kernel's ----------------------
def reason(tag, code):
    for r in st(tag).get("reasons") or []:
        if isinstance(r, dict) and r.get("code") == code:
            return r.get("message") or ""
    return None


m = reason("dtk-other", "kernel_headers_mismatch")
check("dtk", exits.get("dtk-other") == 20 and m is not None and "/dtk-other) are for" in m,
      "dtk: headers for another kernel only: exit %s, kernel_headers_mismatch %r" % (exits.get("dtk-other"), m))
m = reason("dtk-renamed", "kernel_headers_mismatch")
check("dtk", exits.get("dtk-renamed") == 20 and m is not None and "do not match the running kernel" in m,
      "dtk: another kernel's headers under the node's release: exit %s, kernel_headers_mismatch %r" %
      (exits.get("dtk-renamed"), m))
m = reason("dtk-good", "build_possible")
check("dtk", exits.get("dtk-good") == 10 and m is not None and "proven the running kernel's" in m,
      "dtk: the node's kernel's headers in the image: exit %s (build), build_possible %r" % (exits.get("dtk-good"), m))

# ---- enforced signatures: no build of unsigned modules ---------------------------------------
s = st("enforced")
check("enforced", f("enforce", "on") == "Y" and s.get("phase") == "refused" and s.get("decision") == "refuse" and
      "build_unsigned_enforced" in codes("enforced") and f("enforced", "helper") == "0" and f("enforced", "nic") == "0",
      "enforced: sig_enforce %s; %s, reasons %s, nothing loaded (helper %s, nic %s)" %
      (f("enforce", "on"), summary("enforced"), codes("enforced"), f("enforced", "helper"), f("enforced", "nic")))

s = st("untrusted")
m = reason("untrusted", "signing_key_untrusted")
check("enforced", s.get("phase") == "refused" and m is not None and "agent test module signing" in m and
      f("untrusted", "helper") == "0" and f("untrusted", "nic") == "0",
      "enforced, a signing certificate the kernel does not trust: %s, signing_key_untrusted %r, nothing loaded" %
      (summary("untrusted"), m))

# ---- faults: the node is never left with a lie ------------------------------------------------
# Every status write was watched: a ready file only while the status says ready. The watcher
# must have seen ready files at all (the scenarios above make several), or it proved nothing.
check("faults", watch is not None and watch[0] > 0 and watch[1] == 0,
      "watcher: a ready file only while its status says ready: %s checks with a ready file present, %s bad %s" %
      (watch[0] if watch else None, watch[1] if watch else None, watch_bad[:3]))

ok, secs = ready.get("earlyhup", (False, None))
log_h = " ".join(logs.get("earlyhup", []))
check("faults", ok and "deciding again" in log_h and f("earlyhup", "driver") == "agent_test_nic" and
      exits.get("probe-live") == 0,
      "early-hup: SIGHUP as soon as the signals are blocked: decided again (%s), ready file %s, %s bound to %s, "
      "`agent ready` exit %s (expected 0)" %
      ("deciding again" in log_h, secs_text(ok, secs), nic, f("earlyhup", "driver"), exits.get("probe-live")))
check("faults", f("stale", "ready") == "1" and exits.get("probe-stale") == 1 and
      any("stale" in l for l in logs.get("probe-stale", [])),
      "stale ready file: after kill -9 the file is still there (%s) and `agent ready` exits %s (expected 1): %s" %
      (f("stale", "ready"), exits.get("probe-stale"), logs.get("probe-stale")))

j = journals.get("kill9") or {}
intended = [i for i in j.get("inserted") or [] if isinstance(i, dict) and i.get("name") == "agent_test_nic"]
check("faults", f("kill9-window", "initstate") == "coming" and len(intended) == 1 and
      intended[0].get("state") == "intended" and intended[0].get("build_id") == nic_id,
      "kill9-init: while the kernel runs agent_test_nic's init (initstate %s) the journal names it intended with the "
      "bundle's build id: %s" % (f("kill9-window", "initstate"), intended))
check("faults", exits.get("kill9") not in (None, 0) and f("kill9", "nic") == "1" and f("kill9", "nic_id") == nic_id,
      "kill9-init: the agent killed (exit %s), agent_test_nic live anyway (%s, build id %s)" %
      (exits.get("kill9"), f("kill9", "nic"), f("kill9", "nic_id")))
ok, secs = ready.get("kill9-restart", (False, None))
log_k = " ".join(logs.get("kill9-restart", []))
check("faults", ok and "adopted agent_test_nic" in log_k and st("kill9-restart").get("fast_path") is True,
      "kill9-init: the restart adopts it from the journal (log: %s) and is ready on the fast path (%s, fast_path %s)" %
      ("adopted" in log_k, secs_text(ok, secs), st("kill9-restart").get("fast_path")))
u = snaps.get("kill9-unload") or {}
check("faults", exits.get("kill9-unload") == 0 and f("kill9-unload", "nic") == "0" and f("kill9-unload", "helper") == "0" and
      "agent_test_nic" in (u.get("removed") or []),
      "kill9-init: agent unload exit %s removes it (removed %s; nic %s, helper %s)" %
      (exits.get("kill9-unload"), u.get("removed"), f("kill9-unload", "nic"), f("kill9-unload", "helper")))

check("faults", f("readydir-kind", "kind") == "none" and
      f("readydir", "ready") == "0" and st("readydir").get("phase") == "refused" and exits.get("probe-readydir") == 1,
      "ready-dir: a directory named ready (with contents) is gone (%s), status %s, `agent ready` exit %s" %
      (f("readydir-kind", "kind"), st("readydir").get("phase"), exits.get("probe-readydir")))

m = reason("deepjournal", "journal_unreadable")
check("faults", st("deepjournal").get("phase") == "refused" and m is not None and "undo.json" in m and
      "nested deeper" in m and f("deepjournal", "nic") == "0" and f("deepjournal", "ready") == "0",
      "deep-journal: the entrypoint stays up refused, journal_unreadable %r; nothing loaded (nic %s)" %
      (m, f("deepjournal", "nic")))
check("faults", exits.get("deep-unload") == 2 and "nested deeper" in " ".join(logs.get("deep-unload", [])) and
      exits.get("deep-check") == 2 and "nested deeper" in " ".join(logs.get("deep-check", [])),
      "deep-journal: agent unload exit %s, agent --check exit %s, each naming the nesting: %s / %s" %
      (exits.get("deep-unload"), exits.get("deep-check"), logs.get("deep-unload"), logs.get("deep-check")))
ok, secs = ready.get("deepjournal-hup", (False, None))
check("faults", ok and f("deepjournal-hup", "driver") == "agent_test_nic" and exits.get("deepjournal") == 0,
      "deep-journal: the file removed + SIGHUP: ready (%s), %s bound to %s; SIGTERM exit %s" %
      (secs_text(ok, secs), nic, f("deepjournal-hup", "driver"), exits.get("deepjournal")))

u = snaps.get("forged") or {}
not_undone = " ".join(u.get("not_undone") or [])
check("faults", inserts.get("dummy") == 0 and exits.get("forged") == 1 and f("forged", "dummy") == "1" and
      f("forged", "victim") == "1" and f("forged", "fwp_same") == "1" and "no build id" in not_undone and
      "restore path" in not_undone and "NFD file" in not_undone and "firmware" in not_undone,
      "forged-journal: agent unload exit %s (expected 1); dummy still loaded %s, /tmp/victim kept %s, "
      "firmware_class.path unchanged %s; not undone: %s" %
      (exits.get("forged"), f("forged", "dummy"), f("forged", "victim"), f("forged", "fwp_same"), not_undone[:600]))

log_f = " ".join(logs.get("fsfull", []))
check("faults", f("fsfull-alive", "alive") == "1" and f("fsfull", "nic") == "0" and
      f("fsfull", "helper") == "0" and f("fsfull", "ready") == "0" and "status_unwritable" in log_f and "No space left" in log_f,
      "fs-full: the state filesystem full, SIGHUP: the agent alive %s, nothing inserted (helper %s, nic %s), no ready "
      "file (%s), its log names the status write: %s" %
      (f("fsfull-alive", "alive"), f("fsfull", "helper"), f("fsfull", "nic"), f("fsfull", "ready"),
       "No space left" in log_f))
ok, secs = ready.get("fsfull-hup", (False, None))
check("faults", ok and f("fsfull-hup", "driver") == "agent_test_nic" and exits.get("fsfull") == 0 and
      exits.get("fsfull-unload") == 0 and f("fsfull-unload", "nic") == "0",
      "fs-full: space freed + SIGHUP: ready (%s); SIGTERM exit %s; agent unload exit %s, nic %s" %
      (secs_text(ok, secs), exits.get("fsfull"), exits.get("fsfull-unload"), f("fsfull-unload", "nic")))

for v, names in (("modules-string", ("result.json", "'modules'", "not an array")),
                 ("file-escape", ("not a file name",)),
                 ("kernel-number", ("result.json", "'kernel'", "not a string")),
                 ("failed-type", ("failed.json", "'reason'", "not a string")),
                 ("deep", ("result.json", "nested deeper"))):
    tag = "bc-" + v
    m = reason(tag, "build_failed")
    check("faults", st(tag).get("phase") == "refused" and m is not None and all(n in m for n in names) and
          exits.get(tag) == 0 and f(tag, "nic") == "0",
          "broken-cache %s: refused with build_failed naming %s: %r; SIGTERM exit %s (no crash), nothing loaded" %
          (v, names, m, exits.get(tag)))

# ---- output --------------------------------------------------------------------------------
DEBUG = {  # scenario -> (snapshots, agent logs, kernel messages)
    "vm": ([], [], []),
    "first": (["first"], ["first"], ["first"]),
    "second": ([], ["second"], ["second"]),
    "sigterm": (["sigterm"], ["first"], ["sigterm"]),
    "restart": (["restart"], ["restart"], ["restart"]),
    "rmmod": (["rmmod-now", "rmmod-later"], ["restart"], ["rmmod"]),
    "unload": (["unload"], ["unload"], ["unload"]),
    "changed": (["changed"], ["changed"], ["changed"]),
    "initfail": (["initfail", "initfail-hup", "initfail-unload"], ["initfail", "initfail-unload"],
                 ["initfail", "initfail-hup"]),
    "foreign": (["foreign"], ["foreign"], ["foreign"]),
    "swap": (["swap", "swap-unload"], ["swap", "swap-unload"], ["swap"]),
    "rostate": ([], ["rostate"], ["rostate"]),
    "fwconflict": (["fwconflict", "fwconflict-unload"], ["fwconflict", "fwconflict-unload"], ["fwconflict"]),
    "sidecar": (["sidecar", "sidecar2"], ["sidecar", "sidecar2", "sidecar-unload"], ["sidecar"]),
    "sidefail": (["sidefail"], ["sidefail"], []),
    "sidewait": (["sidewait-waiting", "sidewait"], ["sidewait"], []),
    "enforced": (["enforced", "untrusted"], ["enforced", "untrusted", "keys"], ["enforced"]),
    "dtk": (["dtk-other", "dtk-renamed", "dtk-good"], ["dtk-other", "dtk-renamed", "dtk-good"], []),
    "faults": (["earlyhup", "kill9-restart", "readydir", "deepjournal", "deepjournal-hup", "forged", "fsfull-hup",
                "bc-modules-string", "bc-file-escape", "bc-kernel-number", "bc-failed-type", "bc-deep"],
               ["earlyhup", "probe-stale", "kill9", "kill9-restart", "kill9-unload", "readydir", "deepjournal",
                "deep-unload", "deep-check", "forged", "fsfull", "bc-modules-string", "bc-file-escape",
                "bc-kernel-number", "bc-failed-type", "bc-deep"], ["kill9"]),
}
for sc in checks.failed_scenarios():
    serial_log.show_scenario(sc, *DEBUG[sc], snaps, logs, dmesg)

print("\n=== benchmark: start to ready on %s under qemu TCG (wall clock in the VM; status.timings) ===" % kver)
for tag, label in (("first", "first load"), ("restart", "fast path (restart)"),
                   ("sidecar", "sidecar cache hit"), ("sidecar2", "built set, restart")):
    ok, secs = ready.get(tag, (False, None))
    print("  %-20s %s  timings %s" % (label, ("%.2f s" % secs) if ok else "not ready (%s)" % secs_text(ok, secs),
                                      json.dumps(st(tag).get("timings", st(tag).get("timings_ms")))))

print()
sys.exit(checks.summary())
