#!/usr/bin/env bash
# The builder stage of container/Containerfile, after the agent is built (/out/usr/local/bin/agent):
#   1. the driver's DKMS tree (/build/driver) -> /out/usr/src/<PACKAGE_NAME>-<PACKAGE_VERSION>/
#   2. `agent build` for the target kernel against this image's headers, through a host root
#      made of this image's own parts (/build/host: the kernel's release and /proc/version, its
#      module tree, its headers): the node's build path and its kABI check
#   3. the result laid out as KMM expects: /out/opt/lib/modules/<kver>/extra/*.ko, depmod -b;
#      firmware under /out/opt/lib/firmware
#   4. the bundle manifest (`agent manifest`): /out/opt/lib/modules/<kver>/bundle-manifest.json
#   5. pci.ids; the agent's shared libraries (ldd) under /out-libs for the slim variant
# Env: KERNEL_FULL_VERSION (default: the only kernel under /lib/modules).
set -euo pipefail

agent=/out/usr/local/bin/agent
kver=${KERNEL_FULL_VERSION:-}
if [[ -z $kver ]]; then
  kvers=(/lib/modules/*/)
  [[ ${#kvers[@]} -eq 1 ]] || { echo "builder: ${#kvers[@]} kernels in /lib/modules; set KERNEL_FULL_VERSION" >&2; exit 1; }
  kver=$(basename "${kvers[0]}")
fi
[[ -d /lib/modules/$kver ]] || { echo "builder: no /lib/modules/$kver" >&2; exit 1; }

# 1. The DKMS tree at its DKMS path.
conf=/build/driver/dkms.conf
[[ -f $conf ]] || { echo "builder: the driver context has no dkms.conf" >&2; exit 1; }
value() { sed -nE "s/^$1=[\"']?([^\"']*)[\"']?[[:space:]]*\$/\1/p" "$conf" | head -n 1; }
name=$(value PACKAGE_NAME) version=$(value PACKAGE_VERSION)
[[ -n $name && -n $version ]] || { echo "builder: no PACKAGE_NAME/PACKAGE_VERSION in dkms.conf" >&2; exit 1; }
mkdir -p /out/usr/src
cp -a /build/driver "/out/usr/src/$name-$version"

# 2. The host the build runs against: this image's kernel parts (hard links), its release and
# /proc/version as that kernel writes them (from the headers' include/generated).
host=/build/host
gen=/usr/src/linux-headers-$kver/include/generated
uts() { sed -nE "s/^#define $1[[:space:]]+\"(.*)\"\$/\1/p" "$gen"/{compile,utsversion,utsrelease}.h 2>/dev/null | head -n 1; }
mkdir -p "$host/proc/sys/kernel" "$host/lib/modules" "$host/usr/src" "$host/usr/lib" "$host/etc" "$host/var/lib/intel-gpu-driver"
echo "$kver" >"$host/proc/sys/kernel/osrelease"
echo "Linux version $kver ($(uts LINUX_COMPILE_BY)@$(uts LINUX_COMPILE_HOST)) ($(uts LINUX_COMPILER)) $(uts UTS_VERSION)" \
  >"$host/proc/version"
cp -a "/lib/modules/$kver" "$host/lib/modules/"
for d in /usr/src/linux-headers-* /usr/src/kernels; do [[ ! -e $d ]] || cp -al "$d" "$host/usr/src/"; done
for d in /usr/lib/linux-kbuild-*; do [[ ! -e $d ]] || cp -al "$d" "$host/usr/lib/"; done
cp /etc/os-release "$host/etc/"
"$agent" build --root "$host" --sources /out/usr/src --json >/build/result.json || {
  cat /build/result.json >&2
  for l in "$host"/var/lib/intel-gpu-driver/builds/*/*/build.log; do [[ ! -f $l ]] || tail -n 30 "$l" >&2; done
  echo "builder: agent build failed" >&2
  exit 1
}
entries=("$host/var/lib/intel-gpu-driver/builds/$kver"/*/)
[[ ${#entries[@]} -eq 1 && -f ${entries[0]}/result.json ]] || { echo "builder: no single build entry" >&2; exit 1; }
entry=${entries[0]%/}

# 3. KMM's layout.
bundle=/out/opt/lib/modules/$kver
mkdir -p "$bundle/extra" /out/opt/lib/firmware
find "$entry" -maxdepth 1 -name '*.ko*' -exec cp {} "$bundle/extra/" \;
depmod -b /out/opt "$kver"
cp -a /build/firmware/. /out/opt/lib/firmware/

# 4. The manifest, by the agent's own readers.
"$agent" manifest --bundle "$bundle" --entry "$entry" --sources /out/usr/src

# 5. What the agent needs at run time besides the bundle.
mkdir -p /out/usr/share/misc /out/tmp /out/host /out/run/intel-gpu-driver
chmod 1777 /out/tmp
cp -L /usr/share/misc/pci.ids /out/usr/share/misc/
mkdir -p /out-libs
ldd "$agent" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "/out-libs$(dirname "$lib")"
    cp -L "$lib" "/out-libs$lib"
  done
echo "builder: $kver: $(ls "$bundle/extra" | tr '\n' ' ')($name $version)"
