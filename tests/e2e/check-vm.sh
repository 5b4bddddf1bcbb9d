#!/usr/bin/env bash
# `agent --check` on a real kernel: boot it ONCE under qemu (TCG) from a busybox initramfs that
# is a small but real host (the agent and its shared libraries, pci.ids, the kernel's
# /lib/modules/<kver> with its indexes and a subset of its modules, the `build` link to the
# headers with Module.symvers, /boot/vmlinuz-<kver>, /etc/os-release; /proc, /sys, /dev and
# securityfs mounted live), run the agent there on three bundles, then insert the prebuilt
# module with raw init_module and see whether the kernel did what the agent predicted.
#
# The VM has no Intel GPU, but qemu's NIC is an Intel e1000 (8086:100e) at 0000:00:03.0: a
# bundle that ships e1000.ko drives it by its own alias table, with nothing faked.
#
#   prebuilt      /opt/lib/modules/<kver of -p>/e1000.ko, found by the agent's default search
#                 (the image's only bundle): PREBUILT (exit 0), 0000:00:03.0 8086:100e driven
#                 by bundle module e1000, no driver bound yet
#   changed       --bundle with -c's e1000.ko (another kABI): BUILD (exit 10) when the target's
#                 headers (Makefile, Module.symvers) are there, else REFUSE (20)
#   no-device     --bundle with -p's i915.ko only: NO-DEVICE (exit 30)
#   insert        -c's e1000 then -p's e1000 with init_module: each errno must be the one the
#                 agent predicted (modules[].errno); then 0000:00:03.0 must be bound to e1000
#                 (proof: the live e1000's build-id, /sys/module/e1000/notes, is the bundle's)
#   after-insert  the default bundle again, e1000 now live: PREBUILT (exit 0), the device's
#                 driver e1000, the live e1000 not blocking (the bundle's own, or removable)
#
# Usage: check-vm.sh [-s] [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]
#   Each ABI is a directory of the kernel cache or a kernel role of fetch-kernels.sh.
#   ABI       the target kernel, default the role k61 (6.1.0-56 while the archive serves it)
#   -a AGENT  the agent binary (default $AGENT, else build/agent/agent of this repository)
#   -p ABI    source of the prebuilt bundle, must have the target's kABI (default k61_same,
#             the same CRCs as k61)
#   -c ABI    source of the changed-kABI bundle, must not (default k61_old); e.g. for 6.12:
#             check-vm.sh -p k612 -c k612_old k612
#   -l LOG    keep the whole serial console there
#   -s        short: the whole text output of the prebuilt run only, of the others their
#             decision and reasons (for the demo)
# Output: the agent's text output of each run inside the VM and the kernel's messages at the
# inserts, then one line per assertion "PASS|FAIL <what>", then "N passed, M failed".
# Exit: 0 all passed, 1 some failed (or the VM gave no answer), 2 bad setup.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 900), QEMU, BUSYBOX (static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"
NIC_BDF=0000:00:03.0

die() { echo "check-vm: $*" >&2; exit 2; }

usage="usage: check-vm.sh [-s] [-a AGENT] [-p ABI] [-c ABI] [-l LOG] [ABI]"
agent=${AGENT:-$REPO/build/agent/agent} prev=k61_same old=k61_old log="" short=0
while getopts "sa:p:c:l:" opt; do
  case $opt in
    s) short=1 ;;
    a) agent=$OPTARG ;;
    p) prev=$OPTARG ;;
    c) old=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || die "$usage"
abi=${1:-k61}
bash "$HERE/fetch-kernels.sh" "$abi" "$prev" "$old" >&2 || die "fetch-kernels.sh $abi $prev $old failed"
abi=$(vm_abi "$abi") || die "no kernel for $abi"
prev=$(vm_abi "$prev") || die "no kernel for $prev"
old=$(vm_abi "$old") || die "no kernel for $old"
echo "check-vm: target $abi, prebuilt bundle from $prev, changed-kABI bundle from $old" >&2
[[ $old != "$abi" && $old != "$prev" ]] || die "-c $old must be another kABI than the target and -p"
[[ -x $agent ]] || die "no agent binary at $agent (build it, or pass -a AGENT)"
[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX (apt-get install busybox-static)"
! ldd "$BUSYBOX" >/dev/null 2>&1 || die "$BUSYBOX is not static (apt-get install busybox-static)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
command -v gcc >/dev/null || die "no gcc (to build tryload)"

kdir="$CACHE/$abi"
kver=$(<"$kdir/.done")
prev_kver=$(<"$CACHE/$prev/.done")

mod() { # mod ABI NAME -> path of the in-tree module NAME (.ko or .ko.xz) of that kernel
  local rel
  rel=$(grep -m1 -oE "^([^:]*/)?$2\.ko(\.(xz|zst|gz))?:" "$CACHE/$1/modules/modules.dep") \
    || die "no $2 module in $CACHE/$1"
  echo "$CACHE/$1/modules/${rel%:}"
}
put_module() { # put_module SRC DEST: uncompressed (tryload hands the kernel the file's bytes)
  mkdir -p "$(dirname "$2")"
  case $1 in
    *.xz) xz -dc "$1" >"$2" ;;
    *.zst) zstd -qdc "$1" >"$2" ;;
    *.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
  esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-check-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

# The target kernel as a host has it (vm_host_root): the agent with its libraries and pci.ids,
# the module tree with all its indexes but only some modules (those the agent reads for
# vermagic, a sample and the bundle's in-tree counterparts and dependencies), the build/source
# links, the headers they point to, the kernel image (its built-in certificates) and config.
[[ -f /usr/share/misc/pci.ids ]] || die "no /usr/share/misc/pci.ids (apt-get install pci.ids)"
vm_host_root "$root" "$kdir" "$agent" e1000 i915 crc32_generic dummy loop fat
headers=$VM_HEADERS
# Is a build on the node possible? The agent wants a Makefile and Module.symvers there.
expect_changed=20
[[ -n $headers && -f $root$headers/Makefile && -f $root$headers/Module.symvers ]] && expect_changed=10

# The bundles: -p's e1000 is the image's only bundle under /opt/lib/modules (the agent's
# default search); the others are given with --bundle.
put_module "$(mod "$prev" e1000)" "$root/opt/lib/modules/$prev_kver/e1000.ko"
put_module "$(mod "$old" e1000)" "$root/bundles/e1000-$old/e1000.ko"
put_module "$(mod "$prev" i915)" "$root/bundles/i915-$prev/i915.ko"

cat >"$root/init" <<INIT
#!/bin/sh
PREV=$prev OLD=$old PREV_KVER=$prev_kver NIC=$NIC_BDF
INIT
cat >>"$root/init" <<'INIT'
export PATH=/bin:/usr/local/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
dmesg -n 1 # keep the kernel's console messages out of the output: they are shown per step
dmesg -c >/dev/null
echo "CHECKVM BEGIN $(uname -r)"
check() { # check NAME AGENT-ARGS...: the text run, then the JSON run
  name=$1; shift
  t0=$(date +%s)
  agent --check "$@" >/tmp/out 2>/tmp/err; rc=$?
  t1=$(date +%s)
  sed "s/^/OUT $name /" /tmp/out; sed "s/^/ERR $name /" /tmp/err
  echo "CHECK $name exit=$rc seconds=$((t1 - t0))"
  agent --check --json "$@" >/tmp/out 2>/tmp/err; rc=$?
  sed "s/^/JSON $name /" /tmp/out; sed "s/^/ERR $name /" /tmp/err
  echo "CHECKJSON $name exit=$rc"
}
driver() { d=$(readlink "/sys/bus/pci/devices/$NIC/driver" 2>/dev/null) && echo "${d##*/}" || echo -; }
insert() { # insert NAME FILE
  r=$(tryload insert "$2")
  echo "INSERT $1 $r"
  dmesg -c | sed "s/^/DMESG $1 /"
}
echo "DRIVER before $NIC $(driver)"
check prebuilt
check changed --bundle "/bundles/e1000-$OLD"
check no-device --bundle "/bundles/i915-$PREV"
insert "e1000-$OLD" "/bundles/e1000-$OLD/e1000.ko"
insert "e1000-$PREV" "/opt/lib/modules/$PREV_KVER/e1000.ko"
i=0
while [ "$(driver)" = - ] && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
if [ "$(driver)" = - ]; then echo "UNBOUND $NIC"; else echo "BOUND $NIC $(driver)"; fi
dmesg -c | sed "s/^/DMESG bind /"
# Which module is that: the kernel's own record of it (no srcversion unless the module has a
# MODULE_VERSION; the build-id note is always there).
m=/sys/module/e1000
[ -d $m ] && echo "LIVE e1000 initstate=$(cat $m/initstate) refcnt=$(cat $m/refcnt) taint=$(cat $m/taint)" \
  "srcversion=$(cat $m/srcversion 2>/dev/null || echo -)" \
  "build_id=$(od -An -tx1 -v $m/notes/.note.gnu.build-id 2>/dev/null | tr -d ' \n' | tail -c 40)"
check after-insert
echo "CHECKVM END"
poweroff -f
INIT
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-900}
serial="$work/serial.log"
echo "check-vm: booting $kver with a $(($(stat -c %s "$work/initrd.cpio") / 1048576)) MiB initramfs" \
  "(timeout ${timeout_s}s)" >&2
vm_boot check-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "" -nic user,model=e1000 || true
[[ -n $log ]] && cp "$serial.txt" "$log"

build_id=$(readelf -n "$root/opt/lib/modules/$prev_kver/e1000.ko" | awk '/Build ID:/ { print $3 }')
python3 - "$serial.txt" "$prev" "$old" "$prev_kver" "$NIC_BDF" "$expect_changed" "$build_id" "$short" <<'PY'
import json, re, sys
serial, prev, old, prev_kver, nic, expect_changed, build_id, short = sys.argv[1:9]
out, err, js, code, code_json, seconds, inserts, dmesg = {}, {}, {}, {}, {}, {}, {}, {}
bound, before, begin, end, live = None, None, None, False, {}
for line in open(serial, errors="replace"):
    line = line.rstrip("\n")
    m = re.match(r"(OUT|ERR|JSON|DMESG) (\S+) ?(.*)$", line)
    if m:
        kind, name, text = m.groups()
        {"OUT": out, "ERR": err, "JSON": js, "DMESG": dmesg}[kind].setdefault(name, []).append(text)
        continue
    m = re.match(r"CHECK (\S+) exit=(\d+) seconds=(\d+)$", line)
    if m:
        code[m.group(1)], seconds[m.group(1)] = int(m.group(2)), int(m.group(3))
        continue
    m = re.match(r"CHECKJSON (\S+) exit=(\d+)$", line)
    if m:
        code_json[m.group(1)] = int(m.group(2))
        continue
    m = re.match(r"INSERT (\S+) errno=(\d+)$", line)
    if m:
        inserts[m.group(1)] = int(m.group(2))
        continue
    m = re.match(r"(BOUND|UNBOUND) (\S+) ?(\S*)$", line)
    if m and m.group(2) == nic:
        bound = m.group(3) if m.group(1) == "BOUND" else ""
        continue
    m = re.match(r"DRIVER before (\S+) (\S+)$", line)
    if m:
        before = m.group(2)
        continue
    m = re.match(r"LIVE e1000 (.*)$", line)
    if m:
        live = dict(kv.split("=", 1) for kv in m.group(1).split())
        continue
    m = re.search(r"CHECKVM BEGIN (\S+)", line)  # after the firmware's screen escapes
    if m:
        begin = m.group(1)
    if line == "CHECKVM END":
        end = True

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

passed = failed = 0
def check(ok, what):
    global passed, failed
    print("%s %s" % ("PASS" if ok else "FAIL", what))
    passed, failed = passed + bool(ok), failed + (not ok)

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
if begin is None or not end:
    check(False, "the VM ran to the end (CHECKVM BEGIN %s, END %s)" % (begin, end))
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
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
