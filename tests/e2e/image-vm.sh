#!/usr/bin/env bash
# The driver image run as the DaemonSet says, inside ONE boot of a real Debian kernel (role k61)
# under qemu TCG: the node is a small real host (as lifecycle-vm.sh's: the kernel's module tree,
# headers, image; qemu's e1000 NIC 8086:100e at 0000:00:03.0 is the device the test driver
# set's agent_test_nic drives) plus crun, Debian's OCI runtime; the pod is the image's root
# filesystem (`podman create` + `podman export` of container/build-image.sh's node variant,
# built for k61's headers) with the OCI spec image-pod.py makes from
# container/deploy/base/daemonset.yaml itself (hostPath volumes -> bind mounts with readOnly and
# mountPropagation, env, command, args, privileged, hostNetwork/hostPID, the probes' commands,
# preStop, terminationGracePeriodSeconds). The VM's /init plays the kubelet:
#   before     no pod yet: the readinessProbe command (in a container of the pod's spec) fails
#   first      the pod starts; the readinessProbe (`crun exec`, exit code) every 0.5 s: it fails
#              until the status says ready, then passes; the NIC bound to agent_test_nic, the
#              live build ids (/sys/module/<m>/notes) the manifest's and the image's files';
#              status.json and the NFD labels carry the manifest's sources version and digest;
#              firmware copies and firmware_class.path written through the nested writable
#              mounts; what the container sees of /host (read-only, nested mounts)
#   stop       preStop (if the manifest has one), SIGTERM, the grace period: exit 0, the ready
#              file gone, phase stopping, the modules still loaded
#   restart    the pod again: ready on the fast path, nothing reinserted (the driver's probe
#              line is not in the kernel log again)
#   killed     SIGKILL (a pod whose preStop never ran): the ready file stays, and the
#              readinessProbe still fails (no live agent holds the state)
#   tampered   the modules unloaded, one bundle file changed in the image's root: refused,
#              bundle_manifest_mismatch, nothing loaded, the probe fails
# image-check.py asserts on the serial console; expected values come from the image's files
# (sha256, readelf build ids), its manifest and sysfs, not from the agent's status alone.
#
#   image-vm.sh [-i IMAGE] [-l LOG] [ABI]    ABI default k61
#     -i IMAGE  an image already built (default: container/build-image.sh -k ABI node, cached)
# Exit 0 all passed, 1 some failed, 2 bad setup. Env: AGENT_KERNEL_CACHE, AGENT_E2E_TIMEOUT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/vm-script.sh
. "$HERE/vm-script.sh"
DAEMONSET=$REPO/container/deploy/base/daemonset.yaml

vm_args il "$@"
vm_root "podman, mmdebstrap"
vm_need podman crun qemu pyyaml
start_all=$SECONDS

vm_kernels abi
kdir=$CACHE/$abi
kver=$(<"$kdir/.done")
if [[ -z $image ]]; then
  t=$SECONDS
  image=$(bash "$REPO/container/build-image.sh" -k "$abi" node) || vm_die "container/build-image.sh failed"
  echo "image-vm: image $image ready in $((SECONDS - t)) s" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/agent-image-vm.XXXXXX")
cid=""
cleanup() { [[ -z $cid ]] || podman rm -f "$cid" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
root=$work/root

# ---- the pod: the image's root filesystem and the manifest's spec ------------------------------
pod=$root/pod
mkdir -p "$pod/rootfs"
cid=$(podman create "$image") || vm_die "podman create $image failed"
podman export "$cid" | tar -x -C "$pod/rootfs" || vm_die "podman export $image failed"
podman rm "$cid" >/dev/null
cid=""
podman image inspect "$image" >"$work/image.json"
python3 "$HERE/image-pod.py" "$DAEMONSET" "$work/image.json" "$pod" >"$work/pod-summary.json" || vm_die "image-pod.py failed"
bundle=$pod/rootfs/opt/lib/modules/$kver
[[ -f $bundle/bundle-manifest.json ]] || vm_die "the image has no bundle for $kver with a manifest ($bundle)"
image_agent=$pod/rootfs/usr/local/bin/agent
[[ -x $image_agent ]] || vm_die "the image has no /usr/local/bin/agent"
rootfs_mib=$(du -sm "$pod/rootfs" | cut -f1)

# ---- the node: a small real host of the kernel, crun, no agent of its own ----------------------
# (vm_host_root copies an agent and its libraries: the image's, then the agent is removed - the
# node's libraries stay, as a host has them.)
vm_host_root "$root" "$kdir" "$image_agent" e1000 crc32_generic dummy loop fat
rm -f "$root/usr/local/bin/agent"
mkdir -p "$root/usr/bin"
cp /usr/bin/crun "$root/usr/bin/crun"
ldd /usr/bin/crun | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
# The checker's expectations, from the image's own files.
: >"$work/expected"
while read -r ko; do
  echo "FILE $(basename "$ko" .ko) $(sha256sum "$ko" | cut -d' ' -f1) $(vm_file_id "$ko") ${ko#"$pod/rootfs"}" >>"$work/expected"
done < <(find "$bundle" -name '*.ko' | sort)
victim=$(find "$bundle" -name 'agent_test_nic.ko' | head -n 1)
[[ -n $victim ]] || vm_die "no agent_test_nic.ko in the image's bundle"

vm_init "$root" image VICTIM="${victim#"$root"}"
vm_pack "$root" "$work/initrd.cpio"

vm_run "$work/initrd.cpio" 900 "" "the image's root $rootfs_mib MiB" -m 2048

python3 "$HERE/image-check.py" "$SERIAL" "$NIC_BDF" "$kver" "$bundle/bundle-manifest.json" "$work/expected" \
  "$work/pod-summary.json" "$VM_SECONDS" "$((SECONDS - start_all))"
