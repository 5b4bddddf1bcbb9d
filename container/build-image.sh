#!/usr/bin/env bash
# Builds the driver image from container/Containerfile with podman (--isolation=chroot: no
# registry, no container runtime needed), Debian variant:
#   1. the builder's base (DTK_AUTO): `mmdebstrap` of Debian 12 with what the agent's build needs
#      (cmake, ninja, the -dev packages, ccache), dkms, make, gcc-12, the target kernel's headers
#      .debs (fetch-kernels.sh --kbuild keeps them) and a small part of its module tree (the
#      kABI check's sample of the kernel's own modules); `podman import`ed
#   2. the node variant's base: Debian 12 minbase with dkms, make, gcc-12, libc6-dev, kmod and
#      the agent's runtime libraries
#   3. the sources image (container/Containerfile.sources: the agent's sources, builder.sh, the
#      driver and firmware contexts), which the Containerfile reads instead of a build context
#   4. podman build --target node|slim, with no build context
# Each base is cached as an image tagged by the digest of its recipe; the final image is built
# again only when the digest of all inputs (the recipes, the Containerfile, builder.sh, the
# agent's sources, the driver and firmware contexts) changed (label
# io.intel-gpu-driver.inputs). Progress on stderr, tool output in the log (-l), the image name
# on stdout.
#
#   build-image.sh [-k ROLE|ABI] [-d DRIVER_DIR] [-f FIRMWARE_DIR] [-t TAG] [-l LOG] [node|slim]
#     -k  the kernel the bundle is built for (default k61: the bundle must be one its kernel
#         accepts as it is)
#     -d  the driver's DKMS tree (default: the test driver set tests/fixtures/kmod-src, its
#         dkms.conf + agent_test_helper/ + agent_test_nic/)
#     -f  the firmware (default: tests/fixtures/kmod-src/firmware with -d unset, else none)
#     -t  the image (default localhost/intel-gpu-driver:latest for node, :latest-slim for slim)
# Exit 0, 1 on failure (the log's tail printed), 2 on usage. Needs root, podman, mmdebstrap.
# Env: AGENT_KERNEL_CACHE, MIRROR (default http://deb.debian.org/debian), JOBS (default 2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
E2E=$REPO/tests/e2e
CACHE=${AGENT_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/kernels}
export AGENT_KERNEL_CACHE=$CACHE
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# shellcheck source=tests/e2e/vm-lib.sh
. "$E2E/vm-lib.sh"

usage() { echo "usage: build-image.sh [-k ROLE|ABI] [-d DRIVER_DIR] [-f FIRMWARE_DIR] [-t TAG] [-l LOG] [node|slim]" >&2; exit 2; }
target=k61 driver="" firmware="" tag="" log=""
while getopts "k:d:f:t:l:" opt; do
  case $opt in
    k) target=$OPTARG ;;
    d) driver=$(realpath "$OPTARG") ;;
    f) firmware=$(realpath "$OPTARG") ;;
    t) tag=$OPTARG ;;
    l) log=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
variant=${1:-node}
[[ $variant == node || $variant == slim ]] || usage
[[ -n $tag ]] || { [[ $variant == node ]] && tag=localhost/intel-gpu-driver:latest || tag=localhost/intel-gpu-driver:latest-slim; }

work=$(mktemp -d "${TMPDIR:-/tmp}/intel-gpu-driver-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
[[ -n $log ]] || log=$work/build.log
: >"$log"
die() {
  echo "build-image: $*" >&2
  [[ ! -s $log ]] || { echo "build-image: the log's last lines ($log):" >&2; tail -n 25 "$log" >&2; }
  exit 1
}
step() { echo "build-image: $*" >&2; }
[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap --mode=root, podman build --isolation=chroot)"
command -v podman >/dev/null || die "no podman (tests/setup.sh installs it)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap (tests/setup.sh installs it)"

# ---- the target kernel -------------------------------------------------------------------------
bash "$E2E/fetch-kernels.sh" --kbuild "$target" >>"$log" 2>&1 || die "fetch-kernels.sh --kbuild $target failed"
abi=$(vm_abi "$target") && [[ -n $abi ]] || die "no kernel for $target"
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
series=$(<"$kdir/kbuild/.done")
debs=("$kdir/kbuild/debs/linux-headers-$abi-amd64_"*.deb "$kdir/kbuild/debs/linux-headers-$abi-common_"*.deb
  "$kdir/kbuild/debs/linux-kbuild-${series}_"*.deb)
for d in "${debs[@]}"; do [[ -f $d ]] || die "no $d (fetch-kernels.sh --kbuild $target keeps them)"; done
step "kernel $kver ($target)"

# base TAG RECIPE_DIGEST_INPUT... : mmdebstrap with the args in $recipe, then post-steps in
# $post (a function name), imported as TAG.
common_opts=(--mode=root --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/share/gcc/python/*')
make_base() { # make_base TAG POST_FN MMDEBSTRAP_ARG...
  local tag=$1 post=$2 root=$work/base-root start=$SECONDS
  shift 2
  if podman image exists "$tag"; then step "base $tag: cached"; return 0; fi
  step "base $tag: mmdebstrap (a few minutes the first time)"
  rm -rf "$root"
  mmdebstrap "${common_opts[@]}" "$@" bookworm "$root" "$MIRROR" >>"$log" 2>&1 || die "mmdebstrap for $tag failed"
  "$post" "$root"
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages
  tar -C "$root" -cf - . | podman import - "$tag" >>"$log" 2>&1 || die "podman import $tag failed"
  rm -rf "$root"
  # Earlier recipes of this base (another digest) are not used again.
  podman images --format '{{.Repository}}:{{.Tag}}' | grep -F "${tag%-*}-" | grep -vxF "$tag" |
    xargs -r podman rmi >>"$log" 2>&1 || true
  step "base $tag: made in $((SECONDS - start)) s"
}

# ---- 1. the builder's base: Debian 12 + the agent's build deps + the kernel's headers ----------
debdeps=$(
  for d in "${debs[@]}"; do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
    sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | sed '/^$/d' |
    grep -vxE "linux-headers-$abi-(amd64|common)|linux-kbuild-$series" | sort -u | tr '\n' ' '
)
build_pkgs="cmake ninja-build pkg-config g++ binutils make gcc-12 dkms kmod libc6-dev pci.ids
  libkmod-dev libelf-dev libdw-dev libudev-dev libpci-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev libexpected-dev zlib1g-dev liblzma-dev libzstd-dev libssl-dev libkeyutils-dev libbz2-dev $debdeps"
build_pkgs=$(tr ' \n' '\n\n' <<<"$build_pkgs" | sed '/^$/d' | sort -u | tr '\n' ',')
build_pkgs=${build_pkgs%,}
# The kABI check's sample of the kernel's own modules (as lifecycle-vm.sh's host), not e1000.
sample_modules=(crc32_generic dummy loop fat overlay)
builder_post() {
  local root=$1
  mkdir -p "$root/tmp/kernel-debs"
  cp "${debs[@]}" "$root/tmp/kernel-debs/"
  chroot "$root" sh -c 'dpkg -i /tmp/kernel-debs/*.deb' >>"$log" 2>&1 || die "dpkg -i of the headers .debs failed"
  rm -rf "$root/tmp/kernel-debs"
  vm_module_subset "$root" "$kdir" "${sample_modules[@]}" >>"$log" 2>&1 || die "the module subset failed"
  [[ -L $root/lib/modules/$kver/build ]] || die "no /lib/modules/$kver/build in the builder's base"
}
builder_digest=$(
  { printf '%s\n' "${common_opts[@]}" "$build_pkgs" "$MIRROR" "$abi $kver" "${sample_modules[@]}" "post 1"
    sha256sum "${debs[@]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16
)
builder_tag=localhost/intel-gpu-driver-builder:debian12-$abi-$builder_digest
make_base "$builder_tag" builder_post --variant=minbase --include="$build_pkgs"

# ---- 2. the node variant's base ---------------------------------------------------------------
node_pkgs="dkms make gcc-12 libc6-dev binutils kmod libpci3 libudev1 pci.ids"
node_post() { :; }
node_digest=$({ printf '%s\n' "${common_opts[@]}" "$node_pkgs" "$MIRROR" "post 1"; } | sha256sum | cut -c1-16)
node_tag=localhost/intel-gpu-driver-runtime:debian12-node-$node_digest
if [[ $variant == node ]]; then
  make_base "$node_tag" node_post --variant=minbase --include="${node_pkgs// /,}"
fi

# ---- 3. the image -------------------------------------------------------------------------------
# The contexts, staged: the agent's sources (only what its build reads), the DKMS tree, firmware.
ctx=$work/ctx
mkdir -p "$ctx/container" "$work/driver" "$work/firmware"
cp -a "$REPO/CMakeLists.txt" "$REPO/kabi" "$REPO/probes" "$REPO/agent" "$ctx/"
cp "$HERE/Containerfile" "$HERE/Containerfile.sources" "$HERE/builder.sh" "$ctx/container/"
if [[ -z $driver ]]; then
  src=$REPO/tests/fixtures/kmod-src
  cp -a "$src/dkms.conf" "$src/agent_test_helper" "$src/agent_test_nic" "$work/driver/"
  [[ -n $firmware ]] || firmware=$src/firmware
else
  [[ -f $driver/dkms.conf ]] || die "$driver has no dkms.conf (a DKMS source tree is needed)"
  cp -a "$driver/." "$work/driver/"
fi
[[ -z $firmware ]] || cp -a "$firmware/." "$work/firmware/"
# No build products of a developer's tree in the contexts.
find "$work/driver" \( -name '*.o' -o -name '*.ko' -o -name '*.mod*' -o -name '.*.cmd' \) -delete
inputs=$(
  { echo "$variant $builder_tag $node_tag"
    (cd "$work" && find ctx driver firmware -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-16
)
if podman image exists "$tag" &&
  [[ $(podman image inspect --format '{{ index .Labels "io.intel-gpu-driver.inputs" }}' "$tag") == "$inputs" ]]; then
  step "image $tag: cached (inputs $inputs)"
  echo "$tag"
  exit 0
fi
start=$SECONDS
step "image $tag: podman build --target $variant (the agent and the driver are compiled; progress in $log)"
describe=$(git -C "$REPO" describe --always --dirty 2>/dev/null || true)
# The sources image: the one place build contexts are read.
sources_tag=localhost/intel-gpu-driver-sources:$inputs
podman build --isolation=chroot -f "$ctx/container/Containerfile.sources" \
  --build-context "driver=$work/driver" --build-context "firmware=$work/firmware" \
  -t "$sources_tag" "$ctx" >>"$log" 2>&1 || die "podman build of the sources image failed"
# The image from the Containerfile alone (an empty context), as KMM's in-cluster build has it.
# agent build runs DKMS in a private mount namespace (its bind mounts of the headers):
# CAP_SYS_ADMIN, which a RUN step lacks by default.
mkdir -p "$work/empty"
podman build --isolation=chroot --cap-add=SYS_ADMIN --security-opt=seccomp=unconfined \
  --target "$variant" -f "$ctx/container/Containerfile" \
  --build-arg "SOURCES=$sources_tag" --build-arg "DTK_AUTO=$builder_tag" --build-arg "NODE_BASE=$node_tag" \
  --build-arg "KERNEL_FULL_VERSION=$kver" --build-arg "AGENT_GIT_DESCRIBE=$describe" \
  --build-arg "JOBS=${JOBS:-2}" --label "io.intel-gpu-driver.inputs=$inputs" \
  -t "$tag" "$work/empty" >>"$log" 2>&1 || die "podman build failed"
podman rmi "$sources_tag" >>"$log" 2>&1 || true
size=$(podman image inspect --format '{{ .Size }}' "$tag")
step "image $tag: built in $((SECONDS - start)) s, $((size / 1048576)) MiB"
grep -E '^(builder|agent manifest):' "$log" | sed 's/^/build-image: /' >&2 || true
echo "$tag"
