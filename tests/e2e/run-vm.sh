#!/usr/bin/env bash
# Boot one real kernel under qemu (TCG) ONCE and ask it, with init_module, about every test
# module of a manifest. The kernel's errno is the truth the agent is compared with.
#
# Usage: run-vm.sh [-o RESULTS] [-l LOG] [-a APPEND] KERNEL_ABI MANIFEST
#   KERNEL_ABI  a directory of the kernel cache (fetch-kernels.sh), e.g. 6.1.0-56, or a kernel
#               role of fetch-kernels.sh (k61, k612, ...)
#   MANIFEST    one module a line: "CASE ... PATH" (first field the case name, last field the
#               module file, .ko or .ko.xz; a mkcases.py manifest fits); '#' lines ignored.
#               Consecutive lines with the same CASE form a group: its modules are inserted in
#               that order with none removed in between (a dependency then its user, or one
#               module twice). A middle field "without=NAME[,NAME...]" on a case's first line
#               keeps those in-tree modules out of the case's dependencies, as on a node whose
#               module tree lacks them. Middle fields "param=WORD" of a single-module case
#               are its parameters, joined by spaces: init_module's third argument (as modprobe
#               passes a module's options). A middle field "preload=NAME[,NAME...]": the
#               target's in-tree modules NAME (with their in-tree dependencies) are loaded
#               before the case's first module and unloaded after the case, as on a node where
#               they are live. A middle field "modules_disabled": the case runs after every
#               other case of the boot, with kernel.modules_disabled set to 1 right before its
#               first module (irreversible: nothing is loaded or unloaded after it); its result
#               counts only if the VM read the 1 back ("E2E MODULES_DISABLED CASE 1").
#               A middle field "nocap": the case's modules are inserted by a process without
#               CAP_SYS_MODULE in its effective set (tryload insert-nocap), its dependencies
#               with it
#   RESULTS     written here (default: stdout): "CASE ERRNO" a line, "CASE/N ERRNO" for the
#               N-th module (1-based) of a group; RESULTS.dmesg gets the kernel's messages per
#               case ("CASE<TAB>line", CASE/N for groups), LOG (default RESULTS.log) the whole
#               serial console
#   APPEND      added to the kernel command line (e.g. module.sig_enforce=1); the log's
#               "E2E LOCKDOWN <securityfs lockdown>" and "E2E SIG_ENFORCE <Y|N>" lines show
#               what the kernel made of it
# For each module of a case the initramfs /init inserts the target kernel's in-tree
# dependencies of the module of the same name (modules.dep, in dependency order, each once)
# except the modules the case ships itself (a live in-tree copy of those is removed before the
# case), tries the case module, prints "RESULT <case> errno=<N>" and the dmesg lines it caused;
# after the case's last module it removes the case's modules that are live (no more removals
# once a case made the kernel WARN or BUG), and at the end it powers off.
# Exit: 0 every case has a result, 1 some case has none (timeout, crash), 2 bad input.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 300 + 60 per module),
#      QEMU (default qemu-system-x86_64), BUSYBOX (default /bin/busybox, must be static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
# shellcheck source=tests/e2e/vm-lib.sh
. "$HERE/vm-lib.sh"

die() { echo "run-vm: $*" >&2; exit 2; }

usage="usage: run-vm.sh [-o RESULTS] [-l LOG] [-a APPEND] KERNEL_ABI MANIFEST"
results="" log="" append=""
while getopts "o:l:a:" opt; do
  case $opt in
    o) results=$OPTARG ;;
    l) log=$OPTARG ;;
    a) append=$OPTARG ;;
    *) die "$usage" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 2 ]] || die "$usage"
abi=$(vm_abi "$1") || die "no kernel for $1"
manifest=$2
kdir="$CACHE/$abi"
[[ -f $kdir/.done ]] || die "kernel $abi not in $CACHE (run tests/e2e/fetch-kernels.sh $abi)"
kver=$(<"$kdir/.done")
[[ -f $kdir/vmlinuz ]] || die "$kdir/vmlinuz missing"
[[ -s $kdir/modules/modules.dep ]] || die "$kdir/modules/modules.dep missing (rerun fetch-kernels.sh)"
[[ -f $manifest ]] || die "no manifest $manifest"
[[ -x $BUSYBOX ]] || die "no busybox at $BUSYBOX (apt-get install busybox-static)"
command -v "$QEMU" >/dev/null || die "no $QEMU"
[[ -n $log ]] || log=${results:+$results.log}

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-e2e-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,proc,sys,dev,deps,cases}
vm_base_root "$root"

# The modules to try. For each: its unit (CASE, or CASE/N in a group), its name (.modinfo
# name=), the target kernel's in-tree dependencies of the module of that name (modules.dep),
# ordered so that every module comes after what it needs, without the modules the case ships
# or runs without; PRE: module names to unload before it (on a case's first module: a group's
# own names and the case's without= names), POST:
# those to unload after it (the case's names in reverse, on its last module); "-" for none.
# Output lines: UNIT NAME SOURCE FILE DEP,DEP,... PRE POST PARAMS (its param= words joined by
# 0x1f, "-" for none) DISABLE (1: set kernel.modules_disabled before it, else "-") INSERT
# (tryload's verb: insert, or insert-nocap); a case's preload= modules come first in its first
# module's DEP list
nmods=0
while read -r unit mod src file deps pre post params disable insert; do
  case $src in
    *.xz) xz -dc "$src" >"$root/cases/$file" ;;
    *) cp "$src" "$root/cases/$file" ;;
  esac
  [[ $params == - ]] || printf '%s' "${params//$'\x1f'/ }" >"$root/cases/$file.params"
  echo "$unit $mod $file $deps $pre $post $disable $insert" >>"$root/cases.list"
  nmods=$((nmods + 1))
done < <(python3 - "$manifest" "$kdir/modules" "$HERE/mkcases.py" <<'PY'
import importlib.util, os, re, sys
manifest, moddir, mkcases_py = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("mkcases", mkcases_py)
mkcases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mkcases)

def norm(path):
    base = os.path.basename(path)
    return re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base).replace("-", "_")

deps, by_name = {}, {}
with open(os.path.join(moddir, "modules.dep")) as f:
    for line in f:
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[norm(mod)] = mod

def ordered(mod, out, seen):
    for d in deps.get(mod, []):
        if d not in seen:
            seen.add(d)
            ordered(d, out, seen)
            out.append(d)
    return out

cases = []  # [(case, [(name, path)], without, params, preload, [disable], nocap)]: a group is
# consecutive lines of one case
with open(manifest) as f:
    for line in f:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        case, path = fields[0], fields[-1]
        without = {n.replace("-", "_") for f in fields[1:-1] if f.startswith("without=")
                   for n in f[len("without="):].split(",") if n}
        params = [f[len("param="):] for f in fields[1:-1] if f.startswith("param=")]
        preload = [n.replace("-", "_") for f in fields[1:-1] if f.startswith("preload=")
                   for n in f[len("preload="):].split(",") if n]
        disable = "modules_disabled" in fields[1:-1]
        nocap = "nocap" in fields[1:-1]
        for n in preload:
            if n not in by_name:
                sys.exit("run-vm: %s: preload=%s: no such in-tree module" % (case, n))
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", case):
            sys.exit("run-vm: bad case name %r" % case)
        if not os.path.isfile(path):
            sys.exit("run-vm: %s: no module file %s" % (case, path))
        try:
            name = mkcases.modname(path).replace("-", "_")
        except Exception as e:
            sys.exit("run-vm: %s: %s" % (case, e))
        if cases and cases[-1][0] == case:
            if params or cases[-1][3]:
                sys.exit("run-vm: %s: param= only for a case of one module" % case)
            if nocap != cases[-1][6]:
                sys.exit("run-vm: %s: nocap on some of a group's lines only" % case)
            cases[-1][1].append((name, path))
            cases[-1][2].update(without)
            cases[-1][4].extend(n for n in preload if n not in cases[-1][4])
            cases[-1][5][0] = cases[-1][5][0] or disable
        elif any(c == case for c, *_ in cases):
            sys.exit("run-vm: duplicate case %r (the lines of a group must be consecutive)" % case)
        else:
            cases.append((case, [(name, path)], without, params, preload, [disable], nocap))

# modules_disabled cannot be undone: such a case runs last
cases.sort(key=lambda c: c[5][0])
for case, mods, without, params, preload, (disable,), nocap in cases:
    own = list(dict.fromkeys(n for n, _ in mods))
    loaded_first = []
    for n in preload:
        for d in ordered(by_name[n], [], set()) + [by_name[n]]:
            if d not in loaded_first:
                loaded_first.append(d)
    for i, (name, path) in enumerate(mods):
        unit = case if len(mods) == 1 else "%s/%d" % (case, i + 1)
        intree = by_name.get(name)
        chain = [d for d in (ordered(intree, [], set()) if intree else [])
                 if norm(d) not in own and norm(d) not in without]
        # before a case's first module: unload its own names (a group) and those it runs
        # without, live from an earlier case (a user of them was that case's, so is gone)
        first = (own if len(mods) > 1 else []) + sorted(without)
        pre = ",".join(first) if i == 0 and first else "-"
        post = ",".join(list(reversed(own)) + [n for n in preload if n not in own]) \
            if i == len(mods) - 1 else "-"
        if i == 0:
            chain = loaded_first + [d for d in chain if d not in loaded_first]
        print(unit, name, path, unit.replace("/", ".") + ".ko", ",".join(chain) or "-", pre, post,
              "\x1f".join(params) or "-", "1" if disable and i == 0 else "-",
              "insert-nocap" if nocap else "insert")
PY
)
[[ $nmods -gt 0 ]] || die "no cases in $manifest"

# In-tree dependencies, decompressed, under /deps with their modules.dep relative path
# flattened to the file name.
cut -d' ' -f4 "$root/cases.list" | tr ',' '\n' | sort -u | while read -r dep; do
  [[ $dep == - ]] && continue
  out="$root/deps/$(basename "${dep%.xz}")"
  case $dep in
    *.xz) xz -dc "$kdir/modules/$dep" >"$out" ;;
    *) cp "$kdir/modules/$dep" "$out" ;;
  esac
done

cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "E2E BEGIN $(uname -r) $(cat /proc/cmdline)"
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "E2E LOCKDOWN $(cat /sys/kernel/security/lockdown 2>/dev/null || echo unavailable)"
echo "E2E SIG_ENFORCE $(cat /sys/module/module/parameters/sig_enforce 2>/dev/null || echo unavailable)"
dmesg -c >/dev/null
show_dmesg() { dmesg -c | while IFS= read -r l; do echo "DMESG $1 $l"; done; }
unload() { # unload UNIT NAME,NAME,...: each one that is live, retried while it is busy
  [ "$(cat /proc/sys/kernel/modules_disabled)" = 0 ] || return 0
  for n in $(echo "$2" | tr ',' ' '); do
    [ "$n" = - ] && continue
    grep -q "^$n " /proc/modules || continue
    i=0
    while :; do
      r=$(tryload remove "$n")
      [ "$r" = errno=0 ] || [ $i -ge 10 ] && break
      i=$((i + 1)); sleep 1
    done
    echo "REMOVE $1 $n $r"
  done
  dmesg -c >/dev/null
}
warned=0
while read -r unit mod file deps pre post disable insert; do
  [ $warned = 1 ] || unload "$unit" "$pre"
  for dep in $(echo "$deps" | tr ',' ' '); do
    [ "$dep" = - ] && continue
    f=/deps/${dep##*/}; f=${f%.xz}
    n=${f##*/}; n=${n%.ko}; n=$(echo "$n" | tr - _)
    grep -q "^$n " /proc/modules && continue
    r=$(tryload insert "$f")
    echo "DEP $unit $n $r"
    [ "$r" = errno=0 ] || [ "$r" = errno=17 ] || show_dmesg "$unit"
  done
  dmesg -c >/dev/null
  if [ "$disable" = 1 ]; then
    echo 1 >/proc/sys/kernel/modules_disabled
    echo "E2E MODULES_DISABLED $unit $(cat /proc/sys/kernel/modules_disabled)"
  fi
  if [ -f "/cases/$file.params" ]; then
    p=$(cat "/cases/$file.params")
    echo "PARAMS $unit $p"
    r=$(tryload "$insert" "/cases/$file" "$p")
  else
    r=$(tryload "$insert" "/cases/$file")
  fi
  echo "RESULT $unit $r"
  d=$(dmesg -c)
  [ -n "$d" ] && echo "$d" | while IFS= read -r l; do echo "DMESG $unit $l"; done
  # After a kernel WARNING/BUG the module state is suspect (removing it may hit a BUG with
  # module_mutex held and hang the VM): from then on nothing is unloaded.
  case $d in *"cut here"*|*"kernel BUG"*) warned=1 ;; esac
  if [ $warned = 1 ]; then
    [ "$post" = - ] || echo "KEEP $unit $post"
  else
    unload "$unit" "$post"
  fi
done </cases.list
echo "E2E END"
poweroff -f
INIT
chmod +x "$root/init"

vm_pack "$root" "$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-$((300 + 60 * nmods))}
serial="$work/serial.log"
echo "run-vm: booting $kver${append:+ ($append)} with $nmods module(s) to try (timeout ${timeout_s}s)" >&2
vm_boot run-vm "$kdir" "$work/initrd.cpio" "$serial" "$timeout_s" "$append" || true
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 - "$serial.txt" "$root/cases.list" "${results:-/dev/stdout}" <<'PY'
import re, sys
serial, cases_list, results = sys.argv[1:4]
units = [l.split()[0] for l in open(cases_list) if l.strip()]
disabled = {l.split()[0] for l in open(cases_list) if l.split()[6:7] == ["1"]}
errno, dmesg, stuck, kept, took = {}, {}, {}, [], set()
for line in open(serial, errors="replace"):
    m = re.search(r"E2E MODULES_DISABLED (\S+) 1\s*$", line)
    if m:
        took.add(m.group(1))
        continue
    m = re.search(r"RESULT (\S+) errno=(\d+)", line)
    if m:
        errno[m.group(1)] = int(m.group(2))
        continue
    m = re.search(r"DMESG (\S+) (.*)", line)
    if m:
        dmesg.setdefault(m.group(1), []).append(m.group(2))
        continue
    m = re.search(r"KEEP (\S+) (\S+)", line)
    if m:
        kept.append(m.groups())
        continue
    m = re.search(r"REMOVE (\S+) (\S+) errno=(\d+)", line)
    if m and int(m.group(3)):
        stuck[m.group(1), m.group(2)] = int(m.group(3))
for u in sorted(disabled - took):  # the kernel did not take modules_disabled: no answer
    errno.pop(u, None)
    print("run-vm: %s: kernel.modules_disabled did not read 1" % u, file=sys.stderr)
missing = [u for u in units if u not in errno]
with open(results, "w") as out:
    for u in units:
        if u in errno:
            out.write("%s %d\n" % (u, errno[u]))
if results != "/dev/stdout":
    with open(results + ".dmesg", "w") as out:
        for u in units:
            for l in dmesg.get(u, []):
                out.write("%s\t%s\n" % (u, l))
for (u, n), e in stuck.items():
    print("run-vm: %s: could not remove %s (errno=%d), later cases may see EEXIST" % (u, n, e),
          file=sys.stderr)
for u, n in kept:
    print("run-vm: %s: the kernel warned, %s left loaded (and nothing unloaded after it)" % (u, n),
          file=sys.stderr)
for u in missing:
    print("run-vm: %s: no result from the kernel" % u, file=sys.stderr)
sys.exit(1 if missing else 0)
PY
