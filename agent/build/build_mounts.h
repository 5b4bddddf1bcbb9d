// The node's kernel headers where the build expects them. Debian's headers are not relocatable
// (`include /usr/src/linux-headers-<abi>-common/Makefile`, `scripts -> ../../lib/linux-kbuild-
// <series>/scripts`) and dkms.conf files name /lib/modules/$kernelver/build, so the build runs in
// a private mount namespace in which the host's directories appear read-only at their canonical
// paths: the headers, what their Makefiles include and their links name, and
// /lib/modules/<kver> with its build link. The image's own toolchain stays as it is, and so do
// its own headers (a Driver Toolkit's): with those, only the node's module tree is mounted.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "kabi/fd.h"
#include "kabi/result.h"
#include "probes/host_root.h"

namespace agent {

struct BindMount {
  std::string host_path;  // canonical host path (inside the root)
  std::string target;     // where it appears in the build's namespace
  std::string why;        // "headers", "included by ...", "linked from ...", "module tree"
};

// The mounts for building against the headers at `headers` (a host path, e.g.
// "/lib/modules/<kver>/build") for `release`: the headers' canonical directory; every
// directory an absolute `include` of a Makefile there names (Debian's -common), followed the
// same way; for every top-level link of those that leads outside them, its target's parent
// when the target has the link's name (Debian's linux-kbuild-<series> for `scripts`), else the
// target; and the module tree. Targets are unique, parents before children. `headers` empty:
// the module tree alone (the headers are the image's own).
[[nodiscard]] Result<std::vector<BindMount>> plan_header_mounts(const probes::HostRoot& root, const std::string& headers,
                                                                const std::string& release);

// A mount source as a path of this filesystem (the root's path + a canonical host path: no
// links in it, and none are followed when it is opened in the namespace) and its target. A
// descriptor opened before unshare() would not do: bind mounts from another namespace's mounts
// are refused (EINVAL).
struct MountSpec {
  std::string source;
  std::string target;
  bool file = false;  // a file bind (dkms's framework.conf), not a directory
  // No source: `target` hidden - an empty read-only tmpfs over a directory, an empty read-only
  // file over a file. Made after every bind, so nothing mounted shows what it covers.
  bool hide = false;
};

// The mounts that hide the signing key `key` (a path of the agent's own filesystem) from the
// build. A Secret is a directory of its own - its files, kubelet's `..data` link and
// `..<timestamp>` directory - so the directory of `key` is hidden when it holds nothing else
// (`also` names a file that may be there too: the certificate), is not "/" and does not hold
// `keep` (the build's own directory); else the key file alone. The same again for the
// directory the key's links lead to, when that is elsewhere.
[[nodiscard]] std::vector<MountSpec> key_hiding_mounts(const std::filesystem::path& key, const std::string& also,
                                                       const std::string& keep);

// In the child, before exec: a new mount namespace, propagation private, then every mount
// read-only at its target, the hidden ones last. A target that does not exist is created in a writable overlay of
// its nearest existing ancestor, backed by a tmpfs on `scratch` (a directory of the build's
// own), so nothing of the agent's filesystem is written. Returns the first failure as text.
// Async-signal-safe it is not: the child of a single-threaded parent may allocate.
[[nodiscard]] Result<void> enter_build_namespace(const std::vector<MountSpec>& mounts, const std::string& scratch);

// In the child, before exec: the capabilities a build has no use for and that reach past its
// namespace dropped from the bounding and inheritable sets, the ambient set cleared, so that
// neither dkms nor anything it runs has them: CAP_SYS_ADMIN (unmount what hides the key, mount,
// setns), CAP_SYS_PTRACE (another process's /proc/<pid>/root, mem, environ), CAP_SYS_MODULE,
// CAP_SYS_RAWIO, CAP_DAC_READ_SEARCH (open_by_handle_at), CAP_MKNOD, CAP_SYS_BOOT, CAP_BPF,
// CAP_PERFMON. A capability this kernel does not know is skipped.
[[nodiscard]] Result<void> drop_build_capabilities();

}  // namespace agent
