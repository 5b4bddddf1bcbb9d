#!/bin/bash
# The RHEL weak-modules compatibility algorithm, as a baseline for bench/run.sh:
# for each module, `modprobe --dump-modversions` joined against the sorted Module.symvers;
# a module is compatible when every symbol it was built against is exported with the same CRC.
# usage: weak-modules-check.sh SYMVERS MODULE.ko...   exit 0 all compatible, 1 otherwise
set -eu
export LC_ALL=C
symvers=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "0xCRC<TAB>symbol<TAB>..." -> "symbol 0xCRC", sorted by symbol
awk '{ print $2, $1 }' "$symvers" | sort -k1,1 >"$tmp/symvers"
rc=0
for mod in "$@"; do
  modprobe --dump-modversions "$mod" | awk '{ print $2, $1 }' | sort -k1,1 >"$tmp/mod"
  # -a 1: also the module's symbols the kernel does not export (no third field)
  bad=$(join -j 1 -a 1 "$tmp/mod" "$tmp/symvers" | awk '$3 == "" || $2 != $3' | wc -l)
  if [ "$bad" -ne 0 ]; then
    echo "$mod: $bad symbols missing or with another CRC"
    rc=1
  fi
done
exit $rc
