#!/usr/bin/env python3
"""The DaemonSet's pod as a container runtime gets it: container/deploy/base/daemonset.yaml (or
any DaemonSet YAML) translated the way the kubelet and containerd's CRI plugin translate a pod
spec into an OCI runtime spec, for `crun` inside the VM of tests/e2e/image-vm.sh.

    image-pod.py DAEMONSET.yaml IMAGE_CONFIG.json OUTDIR

IMAGE_CONFIG.json: `podman image inspect` of the image (its Config: Env, Entrypoint, Cmd,
WorkingDir). OUTDIR gets:
  config.json      the container's OCI spec (root: rootfs beside it)
  probe/config.json  the same container with the readinessProbe's command as its process: an
                   exec in the container's mount view (used when no container runs, e.g. after
                   a killed pod)
  pod.env          for the VM's /init (sourced by dash): the hostPath volumes (path, type),
                   READINESS, STARTUP (the probe commands, shell-quoted), their period and
                   thresholds, PRESTOP, GRACE (terminationGracePeriodSeconds)
What is translated, as containerd 1.7 does it:
  - command replaces the image's ENTRYPOINT, args its CMD; env after the image's Env; PATH
    containerd's default when the image sets none
  - volumeMounts of hostPath volumes -> bind mounts with "rbind", "rprivate" (None) / "rslave"
    (HostToContainer) / "rshared" (Bidirectional), "ro" when readOnly (the top mount only: the
    runtime's non-recursive read-only, Kubernetes' default before recursiveReadOnly), sorted by
    the depth of the mount path (containerd's sortMounts)
  - privileged: every capability, no seccomp, no AppArmor, no masked or read-only paths, /sys
    read-write, the host's devices (/dev bound)
  - hostNetwork: no network namespace; hostPID: no pid namespace; mount, ipc, uts always
Anything else in the pod spec that would change the container (a kind of volume other than
hostPath, securityContext fields other than privileged, subPath, envFrom, valueFrom, a
lifecycle handler other than exec, an httpGet/tcpSocket/grpc probe) is an error: this runner
does exactly what the manifest says or refuses.
"""
import json
import os
import shlex
import sys

import yaml

CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}
HOSTPATH_TYPES = {"", "Directory", "DirectoryOrCreate", "File", "FileOrCreate"}


def die(msg):
    sys.exit("image-pod: " + msg)


def only(obj, allowed, where):
    extra = set(obj or {}) - set(allowed)
    if extra:
        die(f"{where}: {sorted(extra)} not supported by this runner (it does exactly what the manifest says or refuses)")


def exec_command(handler, where):
    if handler is None:
        return None
    only(handler, {"exec", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold",
                   "initialDelaySeconds"}, where)
    if "exec" not in handler:
        die(f"{where}: only exec handlers are supported")
    return [str(a) for a in handler["exec"]["command"]]


def main():
    if len(sys.argv) != 4:
        die("usage: image-pod.py DAEMONSET.yaml IMAGE_CONFIG.json OUTDIR")
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    ds = [d for d in docs if d.get("kind") == "DaemonSet"]
    if len(ds) != 1:
        die(f"{sys.argv[1]}: {len(ds)} DaemonSets (one expected)")
    pod = ds[0]["spec"]["template"]["spec"]
    inspect = json.load(open(sys.argv[2]))
    image = (inspect[0] if isinstance(inspect, list) else inspect)["Config"]
    out = sys.argv[3]

    only(pod, {"priorityClassName", "automountServiceAccountToken", "hostNetwork", "dnsPolicy", "hostPID",
               "nodeSelector", "tolerations", "terminationGracePeriodSeconds", "containers", "volumes"}, "pod spec")
    if len(pod["containers"]) != 1:
        die("one container expected in the base DaemonSet")
    c = pod["containers"][0]
    only(c, {"name", "image", "imagePullPolicy", "command", "args", "env", "securityContext", "readinessProbe",
             "startupProbe", "livenessProbe", "resources", "volumeMounts", "lifecycle"}, "container " + c["name"])
    only(c.get("securityContext"), {"privileged"}, "securityContext")
    privileged = bool((c.get("securityContext") or {}).get("privileged"))
    if not privileged:
        die("the runner only makes privileged containers (the manifest's is)")

    # The process: command replaces ENTRYPOINT, args replace CMD (Kubernetes' rules).
    entry = c.get("command") if c.get("command") is not None else (image.get("Entrypoint") or [])
    cmd = c.get("args") if c.get("args") is not None else ([] if c.get("command") is not None else (image.get("Cmd") or []))
    argv = [str(a) for a in list(entry) + list(cmd)]
    if not argv:
        die("no command")
    env = list(image.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    for e in c.get("env") or []:
        only(e, {"name", "value"}, "env " + e.get("name", "?"))
        env = [x for x in env if not x.startswith(e["name"] + "=")] + [f"{e['name']}={e.get('value', '')}"]
    env.append("HOSTNAME=" + ("image-vm" if pod.get("hostNetwork") else "intel-gpu-driver"))

    volumes = {}
    for v in pod.get("volumes") or []:
        only(v, {"name", "hostPath"}, "volume " + v["name"])
        hp = v["hostPath"]
        if hp.get("type", "") not in HOSTPATH_TYPES:
            die(f"volume {v['name']}: hostPath type {hp.get('type')} not supported")
        volumes[v["name"]] = hp

    mounts = []
    for m in c.get("volumeMounts") or []:
        only(m, {"name", "mountPath", "readOnly", "mountPropagation"}, "volumeMount " + m["name"])
        if m.get("mountPropagation") not in PROPAGATION:
            die(f"volumeMount {m['name']}: mountPropagation {m.get('mountPropagation')}")
        hp = volumes[m["name"]]
        opts = ["rbind", PROPAGATION[m.get("mountPropagation")], "ro" if m.get("readOnly") else "rw"]
        mounts.append({"destination": m["mountPath"], "type": "bind", "source": hp["path"], "options": opts})
    # containerd's sortMounts: by the number of path components, stable.
    mounts.sort(key=lambda m: len([p for p in m["destination"].split("/") if p]))

    base_mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        # privileged: the host's devices, /sys read-write
        {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "rw"]},
    ]
    namespaces = [{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]
    if not pod.get("hostPID"):
        namespaces.append({"type": "pid"})
    if not pod.get("hostNetwork"):
        namespaces.append({"type": "network"})

    def spec(args, root="rootfs"):
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args, "env": env,
                "cwd": image.get("WorkingDir") or "/",
                "capabilities": {k: CAPS for k in ("bounding", "effective", "inheritable", "permitted")},
                "noNewPrivileges": False,
            },
            "root": {"path": root, "readonly": False},
            "hostname": "image-vm" if pod.get("hostNetwork") else "intel-gpu-driver",
            "mounts": base_mounts + mounts,
            "linux": {"namespaces": namespaces, "rootfsPropagation": "rslave"},
        }

    os.makedirs(out + "/probe", exist_ok=True)
    json.dump(spec(argv), open(out + "/config.json", "w"), indent=1)
    readiness = exec_command(c.get("readinessProbe"), "readinessProbe")
    if readiness:
        json.dump(spec(readiness, "../rootfs"), open(out + "/probe/config.json", "w"), indent=1)
    startup = exec_command(c.get("startupProbe"), "startupProbe")
    only(c.get("lifecycle"), {"preStop"}, "lifecycle")
    prestop = exec_command((c.get("lifecycle") or {}).get("preStop"), "preStop")

    q = lambda v: shlex.quote(v) if v is not None else "''"
    lines = [f"GRACE={int(pod.get('terminationGracePeriodSeconds', 30))}",
             f"READINESS={q(shlex.join(readiness) if readiness else None)}",
             f"READINESS_PERIOD={int((c.get('readinessProbe') or {}).get('periodSeconds', 10))}",
             f"STARTUP={q(shlex.join(startup) if startup else None)}",
             f"STARTUP_BUDGET={int((c.get('startupProbe') or {}).get('periodSeconds', 10)) * int((c.get('startupProbe') or {}).get('failureThreshold', 3))}",
             f"PRESTOP={q(shlex.join(prestop) if prestop else None)}",
             f"HOSTNETWORK={1 if pod.get('hostNetwork') else 0}",
             f"HOSTPID={1 if pod.get('hostPID') else 0}"]
    # The kubelet's part before the container starts: hostPath types checked or created.
    hp_lines = []
    for name, hp in volumes.items():
        hp_lines.append(f"{hp.get('type', '') or 'Any'}:{hp['path']}")
    lines.append("HOSTPATHS=" + q(" ".join(hp_lines)))
    open(out + "/pod.env", "w").write("\n".join(lines) + "\n")
    print(json.dumps({"argv": argv, "mounts": [[m["source"], m["destination"], ",".join(m["options"])] for m in mounts]}))


if __name__ == "__main__":
    main()
