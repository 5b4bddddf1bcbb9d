# shellcheck shell=bash
# Shared by build-node.sh and lifecycle-vm.sh (sourced): a node tree a build can run against,
# and the test driver set as the image ships its sources.
# Needs: FIXTURES (tests/fixtures), CACHE (the kernel cache of fetch-kernels.sh).

# node_with_headers NODE ABI: make-host.sh's debian12 (the k61 kernel's tree, its /proc with the
# release and /proc/version, a partial headers dir) completed with the real headers packages of
# ABI - linux-headers-<kver>, linux-headers-<abi>-common, linux-kbuild-<series> (fetch-kernels.sh
# --kbuild) - laid out as Debian installs them, hard-linked from the cache where it can be.
# Sets NODE_KVER. Returns make-host.sh's status (77: skipped) when it fails.
node_with_headers() {
  local node=$1 abi=$2 rc=0 series
  bash "$FIXTURES/hosts/make-host.sh" debian12 "$node" >/dev/null || rc=$?
  ((rc == 0)) || return "$rc"
  NODE_KVER=$(<"$node/.fixture-kernel")
  series=$(<"$CACHE/$abi/kbuild/.done")
  rm -rf "$node/usr/src/linux-headers-$NODE_KVER"
  node_link_tree "$CACHE/$abi/root/usr/src/linux-headers-$NODE_KVER" "$node/usr/src/linux-headers-$NODE_KVER"
  node_link_tree "$CACHE/$abi/kbuild/usr/src/linux-headers-$abi-common" "$node/usr/src/linux-headers-$abi-common"
  node_link_tree "$CACHE/$abi/kbuild/usr/lib/linux-kbuild-$series" "$node/usr/lib/linux-kbuild-$series"
}

# node_link_tree FROM TO: a copy of FROM at TO, hard links where the file system allows.
node_link_tree() { mkdir -p "$2" && { cp -al "$1/." "$2/" 2>/dev/null || cp -a "$1/." "$2/"; }; }

# dkms_src DIR: the test driver set as /usr/src holds it, DIR/agent-test-driver-1.0/dkms.conf.
dkms_src() {
  mkdir -p "$1/agent-test-driver-1.0"
  cp -r "$FIXTURES/kmod-src/dkms.conf" "$FIXTURES/kmod-src/agent_test_helper" "$FIXTURES/kmod-src/agent_test_nic" \
    "$1/agent-test-driver-1.0/"
}
