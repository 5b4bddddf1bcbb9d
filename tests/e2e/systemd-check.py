#!/usr/bin/env python3
"""Judges systemd-vm.sh's serial console: PASS/FAIL per check, "N passed, M failed".

The expected values come from outside the agent: sysfs and /proc as the VM's kernel shows them,
systemd's own properties (systemctl show / is-active / status), the bundle files' build ids
read on this machine (readelf), the firmware file's size, and the kernel's known verdict on the
changed-kABI build (module_layout, kmod-vm.sh).

usage: systemd-check.py SERIAL NIC_BDF HELPER_ID NIC_ID FW_SIZE VM_SECONDS
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serial_log  # noqa: E402

serial, nic, helper_id, nic_id, fw_size, vm_s = sys.argv[1:7]
log = serial_log.SerialLog(serial, "SDVM", ("AT", "RC", "SHOW", "FACT", "FWPATH", "JOURNAL", "LOG", "ISACTIVE", "STATUS",
                                           "ORDER", "DMESG", "PROC", "MOUNT"))
lines = ["%s %s" % r for r in log.records]

checks = serial_log.Checks(echo=True)


def check(ok, what, scenario, detail=""):
    checks.add(ok, what, scenario, detail)


tagged = log.tagged


def show(tag):
    out = {}
    for l in tagged("SHOW", tag):
        k, _, v = l.partition("=")
        out[k] = v
    return out


def fact(tag):
    got = tagged("FACT", tag)
    return dict(kv.split("=", 1) for kv in got[0].split() if "=" in kv) if got else {}


def rc(tag):
    for l in lines:
        m = re.match(r"RC %s (\d+)" % re.escape(tag), l)
        if m:
            return int(m.group(1))
    return None


def startdone(n):
    """The n-th STARTDONE record (0: the boot's start, 1: the refused start)."""
    recs = [l for l in lines if l.startswith("AT STARTDONE ")]
    if n >= len(recs):
        return {}
    rec = recs[n][len("AT STARTDONE "):]
    head, _, status = rec.partition(" status=")
    d = dict(kv.split("=", 1) for kv in head.split() if "=" in kv)
    d["status"] = status
    return d


check(log.begin is not None, "the VM booted systemd and ran the scenarios (SDVM BEGIN)", "boot", log.problem() or "")
if log.begin is None:
    print("\n".join("SERIAL " + l for l in log.lines[-60:]))
    sys.exit(checks.summary())

# ---- boot ------------------------------------------------------------------------------------
s = show("boot")
f = fact("boot")
check(s.get("Type") == "notify" and s.get("NotifyAccess") == "main", "boot: Type=notify, NotifyAccess=main as systemd parsed them",
      "boot", "%s %s" % (s.get("Type"), s.get("NotifyAccess")))
d = startdone(0)
check(d.get("state") == "activating", "boot: the start was still in progress when ExecStartPost ran (activating)", "boot", str(d))
check(d.get("ready") == "1" and d.get("driver") == "agent_test_nic",
      "boot: when systemd took the start as done, the ready file existed and %s was bound to agent_test_nic "
      "(READY=1 came after the driver was ready, not at fork)" % nic, "boot", str(d))
check(d.get("status", "").startswith("ready: "), "boot: StatusText at the end of the start is 'ready: ...'", "boot", d.get("status", ""))
check(s.get("ActiveState") == "active" and s.get("SubState") == "running", "boot: active/running", "boot",
      "%s/%s" % (s.get("ActiveState"), s.get("SubState")))
check(tagged("ISACTIVE", "boot") == ["active"], "boot: systemctl is-active says active", "boot", str(tagged("ISACTIVE", "boot")))
check(s.get("StatusText", "").startswith("ready: ") and "agent_test_nic" in s.get("StatusText", ""),
      "boot: StatusText shows the phase: ready, naming the bound driver", "boot", s.get("StatusText", ""))
check(any('Status: "ready: ' in l for l in tagged("STATUS", "boot")), "boot: systemctl status shows Status: \"ready: ...\"", "boot")
check(s.get("NRestarts") == "0", "boot: NRestarts=0", "boot", s.get("NRestarts", ""))
check(rc("ready-boot") == 0, "boot: agent ready exits 0", "boot", str(rc("ready-boot")))
check(f.get("driver") == "agent_test_nic", "boot: %s bound to agent_test_nic in sysfs" % nic, "boot", f.get("driver", ""))
check(f.get("helper_id") == helper_id and f.get("nic_id") == nic_id,
      "boot: the live modules' build ids (/sys/module/*/notes) are the bundle files'", "boot",
      "live %s %s, files %s %s" % (f.get("helper_id"), f.get("nic_id"), helper_id, nic_id))
fwpath = (tagged("FWPATH", "boot") or [""])[-1]
check(fwpath.startswith("/var/lib/intel-gpu-driver/firmware/"),
      "boot: firmware_class.path written through the sandbox, under the StateDirectory", "boot", fwpath)
want = "agent_test_nic %s: firmware agent-test/agent_test_nic.bin: %s bytes:" % (nic, fw_size)
check(any(want in l for l in tagged("DMESG", "boot")), "boot: the driver loaded its firmware from there (%s)" % want, "boot")
order = {}
for l in lines:
    if l.startswith("ORDER "):
        order = dict(kv.split("=", 1) for kv in l[len("ORDER "):].split() if "=" in kv)
try:
    sess, act = int(order.get("sessions_start", "0")), int(order.get("unit_active", "0"))
except ValueError:
    sess, act = 0, 0
check(sess > 0 and act > 0 and sess >= act,
      "boot: systemd-user-sessions started after the unit became active (Before=)", "boot", str(order))
proc = {}
for l in tagged("PROC", "boot"):
    k, _, v = l.partition(":")
    proc[k] = v.strip()
caps = int(proc.get("CapBnd", "0"), 16)
want_caps = (1 << 16) | (1 << 21) | (1 << 34)  # CAP_SYS_MODULE, CAP_SYS_ADMIN, CAP_SYSLOG
check(caps == want_caps, "boot: the agent's capability bounding set is CAP_SYS_MODULE CAP_SYS_ADMIN CAP_SYSLOG", "boot",
      "CapBnd %s" % proc.get("CapBnd"))
check(proc.get("NoNewPrivs") == "1" and proc.get("Seccomp") == "2", "boot: no_new_privs and a seccomp filter on the agent", "boot",
      str(proc))
mounts = {}
for l in tagged("MOUNT", "boot"):
    mp, _, opts = l.partition(" ")
    mounts[mp] = opts.split(",")
check(set(mounts) >= {"/", "/sys", "/sys/module/firmware_class/parameters/path"},
      "boot: the agent's mount namespace has its own /, /sys and firmware path mounts", "boot", str(mounts))
check("ro" in mounts.get("/", []) and "ro" in mounts.get("/sys", []), "boot: / and /sys read-only for the agent", "boot", str(mounts))
check("rw" in mounts.get("/sys/module/firmware_class/parameters/path", []) and "rw" in mounts.get("/var/lib/intel-gpu-driver", [])
      and "rw" in mounts.get("/run/intel-gpu-driver", []),
      "boot: the firmware path, StateDirectory and RuntimeDirectory writable", "boot", str(mounts))

# ---- stop ------------------------------------------------------------------------------------
s = show("stop")
f = fact("stop")
check(rc("stop") == 0 and s.get("ActiveState") == "inactive" and s.get("Result") == "success",
      "stop: systemctl stop -> inactive, Result=success", "stop", "rc %s %s" % (rc("stop"), s))
check(s.get("ExecMainCode") == "1" and s.get("ExecMainStatus") == "0", "stop: the agent exited 0 (SIGTERM is the stop)", "stop",
      "code %s status %s" % (s.get("ExecMainCode"), s.get("ExecMainStatus")))
check(fact("boot").get("ready") == "1" and f.get("ready") == "0", "stop: the ready file, there before, is gone", "stop",
      "before %s, after %s" % (fact("boot").get("ready"), f.get("ready")))
check(f.get("helper") == "1" and f.get("nic") == "1" and f.get("driver") == "agent_test_nic",
      "stop: the modules stay loaded and the NIC bound (no ExecStop unload)", "stop", str(f))

check(rc("ready-stop") == 1, "stop: agent ready exits 1", "stop", str(rc("ready-stop")))

# ---- restart, lost ---------------------------------------------------------------------------
s = show("restart")
f = fact("restart")
check(rc("restart") == 0 and s.get("ActiveState") == "active" and s.get("StatusText", "").startswith("ready: ")
      and f.get("ready") == "1" and f.get("driver") == "agent_test_nic" and f.get("nic_id") == nic_id,
      "restart: active, ready, the NIC bound by the bundle's build again", "restart", "rc %s %s %s" % (rc("restart"), s.get("StatusText"), f))
s = show("lost")
f = fact("lost")
st = s.get("StatusText", "")
check(rc("rmmod") == 0 and f.get("nic") == "0", "lost: agent_test_nic removed behind the agent's back (sysfs)", "lost",
      "rc %s %s" % (rc("rmmod"), f))
check(st.startswith("refused: no longer ready") and "agent_test_nic" in st,
      "lost: StatusText says not ready any more, naming the module (the uevent came through the sandbox)", "lost", st)
check(f.get("ready") == "0" and s.get("ActiveState") == "active" and tagged("ISACTIVE", "lost") == ["active"]
      and s.get("NRestarts") == "0", "lost: the ready file gone; still active (READY=1 cannot be taken back), NRestarts=0",
      "lost", "%s %s %s" % (f.get("ready"), s.get("ActiveState"), s.get("NRestarts")))
check(rc("stop-lost") == 0, "lost: stopped", "lost", str(rc("stop-lost")))

# ---- unload ----------------------------------------------------------------------------------
f = fact("unload")
check(fact("stop").get("nic") == "1" and rc("unload") == 0 and f.get("helper") == "0" and f.get("nic") == "0",
      "unload: agent unload removed the modules (live before it)", "unload", "rc %s %s" % (rc("unload"), f))

# ---- refused ---------------------------------------------------------------------------------
s = show("refused")
later = show("refused-later")
f = fact("refused")
d = startdone(1)
check(rc("refused-start") == 0, "refused: systemctl start returned 0 (READY=1 on refusal, no start timeout)", "refused",
      str(rc("refused-start")))
check(d.get("state") == "activating" and d.get("status", "").startswith("refused: "),
      "refused: the start ended with the refusal in STATUS=", "refused", str(d))
check(s.get("ActiveState") == "active" and tagged("ISACTIVE", "refused") == ["active"], "refused: active (systemctl is-active)",
      "refused", "%s %s" % (s.get("ActiveState"), tagged("ISACTIVE", "refused")))
st = s.get("StatusText", "")
check(st.startswith("refused: ") and "module_layout" in st, "refused: StatusText 'refused: ...' names the kernel's reason (module_layout)",
      "refused", st)
check(any('Status: "refused: ' in l for l in tagged("STATUS", "refused")), "refused: systemctl status shows Status: \"refused: ...\"",
      "refused")
check(f.get("ready") == "0" and f.get("nic") == "0" and f.get("driver") != "agent_test_nic", "refused: nothing loaded, not ready",
      "refused", str(f))
check(rc("ready-refused") == 1, "refused: agent ready exits 1 (active is not ready)", "refused", str(rc("ready-refused")))
check(later.get("ActiveState") == "active" and later.get("NRestarts") == "0" and later.get("MainPID") == s.get("MainPID")
      and s.get("MainPID", "0") != "0",
      "refused: 10 s later still active, the same main pid, NRestarts=0 (no restart loop)", "refused",
      "then %s, later %s" % ({k: s.get(k) for k in ("MainPID", "NRestarts")}, {k: later.get(k) for k in ("ActiveState", "MainPID", "NRestarts")}))

# ---- stop2 -----------------------------------------------------------------------------------
s = show("stop2")
check(rc("stop2") == 0 and s.get("ActiveState") == "inactive" and s.get("ExecMainStatus") == "0" and s.get("Result") == "success",
      "stop2: the refused agent stops cleanly (inactive, exit 0)", "stop2", "rc %s %s" % (rc("stop2"), s))
check(log.ended, "the VM ran every scenario (SDVM END)", "stop2", log.problem() or "")

for sc in sorted(set(checks.failed())):
    for l in tagged("JOURNAL", sc) + tagged("LOG", sc):
        print("  [%s] %s" % (sc, l))
if checks.failed():
    print("\n".join("SERIAL " + l for l in log.lines if not l.startswith(("JOURNAL", "SHOW")))[-20000:])

m0 = re.search(r"uptime=([\d.]+)", " ".join(log.begin))
m1 = re.search(r"uptime=([\d.]+)", " ".join(log.end or []))
print("systemd-vm: the VM ran %s s; the scenarios began at %s s of uptime%s" %
      (vm_s, m0.group(1) if m0 else "?", ", ended at %s s" % m1.group(1) if m1 else ""))
sys.exit(checks.summary())
