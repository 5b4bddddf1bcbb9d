#!/usr/bin/env python3
"""The assertions of check-vm.sh on the VM's serial console (see that script).

Usage: check-check.py SERIAL PREV OLD PREV_KVER NIC EXPECT_CHANGED BUILD_ID SHORT
EXPECT_CHANGED: the exit the changed-kABI bundle must get (10 build, 20 refuse: whether the
target's headers allow a build); BUILD_ID: the prebuilt e1000.ko's; SHORT: 1 for the demo's
short output. Prints the agent's output of each run and the kernel's messages at the inserts,
then "PASS|FAIL <what>" lines and "N passed, M failed". Exit 0 all passed, 1 some failed.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

serial, prev, old, prev_kver, nic, expect_changed, build_id, short = sys.argv[1:9]
log = serial_log.SerialLog(serial, "CHECKVM", ("OUT", "ERR", "JSON", "DMESG", "CHECK", "CHECKJSON", "INSERT", "BOUND",
                                              "UNBOUND", "DRIVER", "LIVE"))
out, err, js, dmesg = (log.by_tag(k) for k in ("OUT", "ERR", "JSON", "DMESG"))
code = {t: int(log.kv("CHECK", t)["exit"]) for t in log.by_tag("CHECK")}
seconds = {t: int(log.kv("CHECK", t)["seconds"]) for t in log.by_tag("CHECK")}
code_json = {t: int(log.kv("CHECKJSON", t)["exit"]) for t in log.by_tag("CHECKJSON")}
inserts = {t: int(log.kv("INSERT", t)["errno"]) for t in log.by_tag("INSERT") if "errno" in log.kv("INSERT", t)}
bound = None
if log.tagged("BOUND", nic):
    bound = log.last("BOUND", nic).strip()
elif log.tagged("UNBOUND", nic):
    bound = ""
before = (log.tagged("DRIVER", "before") or [" "])[-1].split(" ")[-1] or None
live = log.kv("LIVE", "e1000")

reports = {}
for name, lines in js.items():
    try:
        reports[name] = json.loads("\n".join(lines))
    except ValueError as e:
        reports[name] = {"_error": "bad JSON: %s" % e}

labels = {
    "prebuilt": "default bundle /opt/lib/modules/%s (e1000 of %s)" % (prev_kver, prev),
    "changed": "--bundle with the e1000 of %s" % old,
    "no-device": "--bundle with the i915 of %s only" % prev,
    "after-insert": "default bundle again, after the insert",
}
for name in ("prebuilt", "changed", "no-device", "after-insert"):
    if name not in code and name not in out:
        continue
    decision = reports.get(name, {}).get("decision")
    print("\n=== agent --check in the VM (%s): exit %s, JSON decision %s, %ss ===" %
          (labels[name], code.get(name, "none"), decision, seconds.get(name, "?")))
    for l in out.get(name, []):
        if short == "1" and name != "prebuilt" and not l:
            break  # the decision and its reasons only
        print("  " + l)
    for l in err.get(name, []):
        print("  stderr: " + l)
for name in ("e1000-" + old, "e1000-" + prev, "bind"):
    # short: without the BTF noise of a module from another build (harmless on Debian)
    lines = [l for l in dmesg.get(name, []) if short != "1" or not re.search(r"\] (BPF:|failed to validate module .* BTF)", l)]
    if lines:
        print("\n=== kernel messages at insert of %s ===" % name if name != "bind" else "\n=== kernel messages ===")
        for l in lines:
            print("  " + l)

checks = serial_log.Checks(echo=True)
check = checks.add


def device(name):
    for d in reports.get(name, {}).get("devices", []):
        if d.get("bdf") == nic:
            return d
    return None


def predicted_errno(name, module):
    for m in reports.get(name, {}).get("modules", []):
        if m.get("name") == module:
            return m.get("errno")
    return None

print()
if log.problem():
    check(False, "the VM ran to the end: %s" % log.problem())
expect = {"prebuilt": (0, "prebuilt"), "changed": (int(expect_changed), "build" if expect_changed == "10" else "refuse"),
          "no-device": (30, "no-device"), "after-insert": (0, "prebuilt")}
for name, (rc, decision) in expect.items():
    r = reports.get(name, {})
    check(code.get(name) == rc and code_json.get(name) == rc and r.get("decision") == decision,
          "%s: exit %s (JSON run %s), decision %s; expected exit %d, %s" %
          (name, code.get(name), code_json.get(name), r.get("decision", r.get("_error")), rc, decision))

d = device("prebuilt")
check(d is not None and (d["vendor"], d["device"]) == ("0x8086", "0x100e") and d.get("bundle_modules") == ["e1000"]
      and d.get("driver") is None,
      "prebuilt: %s %s driven by bundle module %s, driver %s; expected 8086:100e, e1000, no driver (%s before)" %
      (nic, d and "%s:%s" % (d["vendor"][2:], d["device"][2:]), d and d.get("bundle_modules"), d and d.get("driver"),
       before))
for name, report in (("e1000-" + old, "changed"), ("e1000-" + prev, "prebuilt")):
    want = predicted_errno(report, "e1000")
    got = inserts.get(name)
    check(got is not None and got == want,
          "insert %s: the kernel answered errno=%s, agent --check predicted errno=%s" % (name, got, want))
check(bound == "e1000" and live.get("build_id") == build_id,
      "%s bound after the insert: driver %s, the live e1000's build-id %s (the bundle's: %s)" %
      (nic, bound if bound else "none", live.get("build_id", "-"), build_id))
# The live e1000 is the bundle's, and the agent must see it as its own by build id (Debian's
# modules have no srcversion: no MODULE_VERSION, no MODULE_SRCVERSION_ALL).
d = device("after-insert")
conf = [c for c in reports.get("after-insert", {}).get("conflicts", []) if c.get("name") == "e1000"]
check(d is not None and d.get("driver") == "e1000" and d.get("bundle_modules") == ["e1000"] and
      len(conf) == 1 and conf[0].get("same_as_bundle") and conf[0].get("build_id") == build_id,
      "after-insert: %s driver %s, bundle modules %s; live e1000: same_as_bundle %s, removable %s (%s)" %
      (nic, d and d.get("driver"), d and d.get("bundle_modules"), conf and conf[0].get("same_as_bundle"),
       conf and conf[0].get("removable"), " ".join("%s=%s" % kv for kv in live.items())))
sys.exit(checks.summary())
