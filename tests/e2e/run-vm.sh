#!/usr/bin/env bash
# Boot one real kernel under qemu (TCG) ONCE and ask it, with init_module, about every test
# module of a manifest. The kernel's errno is the truth the agent is compared with.
#
# Usage: run-vm.sh [-o RESULTS] [-l LOG] KERNEL_ABI MANIFEST
#   KERNEL_ABI  a directory of the kernel cache (fetch-kernels.sh), e.g. 6.1.0-56
#   MANIFEST    one case a line: "CASE ... PATH" (first field the case name, last field the
#               module file, .ko or .ko.xz; a mkcases.py manifest fits); '#' lines ignored
#   RESULTS     written here (default: stdout): "CASE ERRNO" a line; RESULTS.dmesg gets the
#               kernel's messages per case ("CASE<TAB>line"), LOG (default RESULTS.log) the
#               whole serial console
# For each case the initramfs /init inserts the target kernel's in-tree dependencies of the
# module of the same name (modules.dep, in dependency order, each once), tries the case
# module, prints "RESULT <case> errno=<N>" and the dmesg lines it caused, removes the module
# if it loaded, and at the end powers off.
# Exit: 0 every case has a result, 1 some case has none (timeout, crash), 2 bad input.
# Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT (seconds, default 300 + 60 per case),
#      QEMU (default qemu-system-x86_64), BUSYBOX (default /bin/busybox, must be static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
QEMU=${QEMU:-qemu-system-x86_64}
BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "run-vm: $*" >&2; exit 2; }

results="" log=""
while getopts "o:l:" opt; do
  case $opt in
    o) results=$OPTARG ;;
    l) log=$OPTARG ;;
    *) die "usage: run-vm.sh [-o RESULTS] [-l LOG] KERNEL_ABI MANIFEST" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 2 ]] || die "usage: run-vm.sh [-o RESULTS] [-l LOG] KERNEL_ABI MANIFEST"
abi=$1 manifest=$2
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

gcc -static -O2 -Wall -o "$root/bin/tryload" "$HERE/tryload.c"
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# Cases and their dependencies. For each case: its module name (.modinfo name=), and the
# target kernel's in-tree module of that name's dependencies from modules.dep, ordered so that
# every module comes after what it needs. Output lines: CASE MODNAME FILE DEP,DEP,...
ncases=0
while read -r case mod src deps; do
  dst="$root/cases/$case.ko"
  case $src in
    *.xz) xz -dc "$src" >"$dst" ;;
    *) cp "$src" "$dst" ;;
  esac
  echo "$case $mod $case.ko $deps" >>"$root/cases.list"
  ncases=$((ncases + 1))
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

names = set()
with open(manifest) as f:
    for line in f:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        case, path = fields[0], fields[-1]
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", case) or case in names:
            sys.exit("run-vm: bad or duplicate case name %r" % case)
        names.add(case)
        if not os.path.isfile(path):
            sys.exit("run-vm: %s: no module file %s" % (case, path))
        try:
            name = mkcases.modname(path)
        except Exception as e:
            sys.exit("run-vm: %s: %s" % (case, e))
        intree = by_name.get(name.replace("-", "_"))
        chain = ordered(intree, [], set()) if intree else []
        print(case, name, path, ",".join(chain) or "-")
PY
)
[[ $ncases -gt 0 ]] || die "no cases in $manifest"

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
echo "E2E BEGIN $(uname -r)"
dmesg -c >/dev/null
show_dmesg() { dmesg -c | while IFS= read -r l; do echo "DMESG $1 $l"; done; }
while read -r case mod file deps; do
  for dep in $(echo "$deps" | tr ',' ' '); do
    [ "$dep" = - ] && continue
    f=/deps/${dep##*/}; f=${f%.xz}
    n=${f##*/}; n=${n%.ko}; n=$(echo "$n" | tr - _)
    grep -q "^$n " /proc/modules && continue
    r=$(tryload insert "$f")
    echo "DEP $case $n $r"
    [ "$r" = errno=0 ] || [ "$r" = errno=17 ] || show_dmesg "$case"
  done
  dmesg -c >/dev/null
  r=$(tryload insert "/cases/$file")
  echo "RESULT $case $r"
  show_dmesg "$case"
  if [ "$r" = errno=0 ]; then
    i=0
    while :; do
      r=$(tryload remove "$(echo "$mod" | tr - _)")
      [ "$r" = errno=0 ] || [ $i -ge 10 ] && break
      i=$((i + 1)); sleep 1
    done
    echo "REMOVE $case $r"
    dmesg -c >/dev/null
  fi
done </cases.list
echo "E2E END"
poweroff -f
INIT
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

timeout_s=${AGENT_E2E_TIMEOUT:-$((300 + 60 * ncases))}
serial="$work/serial.log"
echo "run-vm: booting $kver with $ncases case(s) (timeout ${timeout_s}s)" >&2
start=$SECONDS
rc=0
timeout --kill-after=10 "$timeout_s" "$QEMU" -accel tcg -cpu max -m 1024 -nographic -no-reboot \
  -kernel "$kdir/vmlinuz" -initrd "$work/initrd.cpio" \
  -append "console=ttyS0 panic=-1 quiet" </dev/null >"$serial" 2>&1 || rc=$?
tr -d '\r' <"$serial" >"$serial.txt"
echo "run-vm: qemu exited $rc after $((SECONDS - start))s" >&2
[[ -n $log ]] && cp "$serial.txt" "$log"

python3 - "$serial.txt" "$root/cases.list" "${results:-/dev/stdout}" <<'PY'
import re, sys
serial, cases_list, results = sys.argv[1:4]
cases = [l.split()[0] for l in open(cases_list) if l.strip()]
errno, dmesg, removed = {}, {}, {}
for line in open(serial, errors="replace"):
    m = re.search(r"RESULT (\S+) errno=(\d+)", line)
    if m:
        errno[m.group(1)] = int(m.group(2))
        continue
    m = re.search(r"DMESG (\S+) (.*)", line)
    if m:
        dmesg.setdefault(m.group(1), []).append(m.group(2))
        continue
    m = re.search(r"REMOVE (\S+) errno=(\d+)", line)
    if m:
        removed[m.group(1)] = int(m.group(2))
missing = [c for c in cases if c not in errno]
with open(results, "w") as out:
    for c in cases:
        if c in errno:
            out.write("%s %d\n" % (c, errno[c]))
if results != "/dev/stdout":
    with open(results + ".dmesg", "w") as out:
        for c in cases:
            for l in dmesg.get(c, []):
                out.write("%s\t%s\n" % (c, l))
for c, e in removed.items():
    if e:
        print("run-vm: %s: could not remove the module (errno=%d), later cases may see EEXIST"
              % (c, e), file=sys.stderr)
for c in missing:
    print("run-vm: %s: no result from the kernel" % c, file=sys.stderr)
sys.exit(1 if missing else 0)
PY
