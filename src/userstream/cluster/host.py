"""Every change the cluster makes to this machine, recorded so that ``down`` undoes exactly it.

The cluster keeps its networking inside network namespaces of its own (bridges, routes, iptables
rules, forwarding all live there and vanish with them); what touches the host itself is written to
a journal (``host-changes.json`` in the state folder) before it happens:

- the global kernel settings kubelet writes (their previous values, restored on ``down``);
- folders outside the state folder that did not exist before (removed on ``down``);
- whether ``/run/netns`` was already a mount point (``ip netns add`` makes it one);
- the network namespaces themselves.

Mounts under the state folder (pod volumes, container root filesystems, sandbox ``/dev/shm``) and
the pods' network namespaces are found from ``/proc/self/mountinfo`` at ``down``, not journalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from userstream.errors import PrerequisiteError, UserstreamError

PROC_SYS = Path("/proc/sys")
CGROUP_ROOT = Path("/sys/fs/cgroup")
RUN_NETNS = Path("/run/netns")


class HostError(UserstreamError):
    """A host command failed; the message has the command and its output."""


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise HostError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {output}")
    return result


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run in a network namespace only (same mounts, so kubelet and containerd agree)."""
    return ["nsenter", f"--net={RUN_NETNS / netns}", "--", *argv]


def is_mountpoint(path: Path) -> bool:
    """True when ``path`` is a mount point (also a bind mount of its own file system, which
    os.path.ismount cannot see)."""
    return path.resolve() in mountpoints_under([path.resolve()]) if path.exists() else False


# --- journal ------------------------------------------------------------------------------------


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            self.data = json.loads(path.read_text(encoding="utf-8"))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def _dict(self, key: str) -> dict[str, str]:
        value = self.data.setdefault(key, {})
        assert isinstance(value, dict)
        return value

    def _list(self, key: str) -> list[str]:
        value = self.data.setdefault(key, [])
        assert isinstance(value, list)
        return value

    # sysctls ------------------------------------------------------------------------------------
    def remember_sysctls(self, names: Iterable[str]) -> None:
        """Record each global sysctl's current value, unless already recorded by an earlier ``up``."""
        saved = self._dict("sysctls")
        for name in names:
            if name not in saved:
                with contextlib.suppress(OSError):
                    saved[name] = (PROC_SYS / name).read_text().strip()
        self.save()

    def restore_sysctls(self) -> dict[str, str]:
        restored: dict[str, str] = {}
        saved = self._dict("sysctls")
        for name, value in list(saved.items()):
            path = PROC_SYS / name
            try:
                if path.read_text().strip() != value:
                    path.write_text(value)
                    restored[name] = value
                del saved[name]
            except OSError:
                continue
        self.save()
        return restored

    # folders outside the state folder ----------------------------------------------------------
    def remember_absent(self, paths: Iterable[Path]) -> None:
        """Journal paths that do not exist now and that a component will create by itself."""
        created = self._list("created_paths")
        for path in paths:
            if not path.exists() and str(path) not in created:
                created.append(str(path))
        self.save()

    def remove_created_dirs(self) -> list[str]:
        removed = []
        created = self._list("created_paths")
        for name in list(reversed(created)):
            path = Path(name)
            existed = path.exists()
            if path.is_dir() and not is_mountpoint(path):
                shutil.rmtree(path, ignore_errors=True)
            elif existed and not path.is_dir():
                path.unlink(missing_ok=True)
            if not path.exists():
                created.remove(name)
                if existed:
                    removed.append(name)
        self.save()
        return removed

    # /run/netns ---------------------------------------------------------------------------------
    def remember_run_netns(self) -> None:
        if "run_netns_was_mount" not in self.data:
            self.data["run_netns_was_mount"] = is_mountpoint(RUN_NETNS)
            self.data["run_netns_existed"] = RUN_NETNS.exists()
            self.save()

    def restore_run_netns(self) -> None:
        if "run_netns_was_mount" not in self.data:
            return
        if RUN_NETNS.exists() and not any(RUN_NETNS.iterdir()):
            if not self.data["run_netns_was_mount"]:
                for _ in range(5):
                    if not is_mountpoint(RUN_NETNS):
                        break
                    if run(["umount", str(RUN_NETNS)], check=False).returncode != 0:
                        break
            if not self.data["run_netns_existed"]:
                with contextlib.suppress(OSError):
                    RUN_NETNS.rmdir()
        self.data.pop("run_netns_was_mount", None)
        self.data.pop("run_netns_existed", None)
        self.save()


# --- network namespaces and links --------------------------------------------------------------


def netns_exists(name: str) -> bool:
    return (RUN_NETNS / name).exists()


def add_netns(journal: Journal, name: str) -> None:
    journal.remember_run_netns()
    names = journal._list("netns")
    if name not in names:
        names.append(name)
        journal.save()
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(journal: Journal) -> list[str]:
    deleted = []
    names = journal._list("netns")
    for name in list(names):
        if netns_exists(name):
            run(["ip", "netns", "delete", name], check=False)
        if not netns_exists(name):
            names.remove(name)
            deleted.append(name)
    journal.save()
    return deleted


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", *(["-n", netns] if netns else []), "link", "show", name]
    return run(argv, check=False).returncode == 0


def netns_sysctl(netns: str, name: str, value: str) -> None:
    """Write a per-network-namespace sysctl inside ``netns`` (never the host's)."""
    run(in_netns(netns, ["sh", "-c", f"echo {value} > /proc/sys/{name}"]))


# --- mounts, cgroups, processes -----------------------------------------------------------------


def mountpoints_under(prefixes: Sequence[Path]) -> list[Path]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    found: list[Path] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    roots = [str(p) for p in prefixes]
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        if any(point == r or point.startswith(r.rstrip("/") + "/") for r in roots):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(prefixes: Sequence[Path]) -> int:
    count = 0
    for _ in range(5):
        points = mountpoints_under(prefixes)
        if not points:
            break
        for point in points:
            if run(["umount", str(point)], check=False).returncode != 0:
                run(["umount", "-l", str(point)], check=False)
            count += 1
    return count


CNI_RESULTS = Path("/var/lib/cni/results")


def remove_cni_results(network: str) -> int:
    """The CNI plugins' cached results of our pods (libcni keeps them under /var/lib/cni/results as
    ``<network>-<container>-<interface>``; containerd 1.6 offers no other folder)."""
    removed = 0
    if CNI_RESULTS.is_dir():
        for entry in CNI_RESULTS.glob(f"{network}-*"):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """Our cgroup folder in every mounted hierarchy (cgroup v1 has one per controller)."""
    dirs: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return dirs
    for hierarchy in CGROUP_ROOT.iterdir():
        candidate = hierarchy / cgroup_root.lstrip("/")
        if candidate.is_dir():
            dirs.append(candidate)
    return dirs


def create_cgroups(cgroup_root: str) -> None:
    """Our cgroup folder in every hierarchy: kubelet refuses a ``cgroupRoot`` that is missing in any.

    A new cpuset cgroup (cgroup v1) has no CPUs or memory nodes until given its parent's.
    """
    if not CGROUP_ROOT.is_dir():
        return
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink() or not (hierarchy / "cgroup.procs").exists():
            continue
        target = hierarchy / cgroup_root.lstrip("/")
        target.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            source, dest = hierarchy / name, target / name
            if source.exists() and dest.exists() and not dest.read_text().strip():
                dest.write_text(source.read_text().strip())


def kill_cgroup_processes(cgroup_root: str) -> int:
    """SIGKILL every process in our cgroups (containers left behind by a stopped kubelet)."""
    pids: set[int] = set()
    for top in cgroup_dirs(cgroup_root):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def remove_cgroups(cgroup_root: str, timeout_s: float = 20.0) -> list[Path]:
    """rmdir our cgroup trees bottom-up; a cgroup empties shortly after its last process dies."""
    left: list[Path] = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = []
        for top in cgroup_dirs(cgroup_root):
            subdirs = sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for directory in [*subdirs, top]:
                try:
                    directory.rmdir()
                except OSError:
                    left.append(directory)
        if not left or time.monotonic() > deadline:
            return left
        kill_cgroup_processes(cgroup_root)
        time.sleep(0.5)


def processes_matching(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (e.g. a node's containerd socket path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in raw:
            pids.append(int(entry.name))
    return pids


def kill_matching(marker: str) -> int:
    pids = processes_matching(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


# --- prerequisites ------------------------------------------------------------------------------

# what the cluster needs from the host, and the Debian package that provides it
HOST_TOOLS = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "conntrack": "conntrack",
}
CNI_PLUGINS_PACKAGE = "containernetworking-plugins"
CNI_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))


def cni_bin_dir() -> Path | None:
    for directory in CNI_BIN_DIRS:
        if (directory / "bridge").is_file() and (directory / "host-local").is_file():
            return directory
    return None


def missing_packages() -> list[str]:
    packages = {pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None}
    if cni_bin_dir() is None:
        packages.add(CNI_PLUGINS_PACKAGE)
    return sorted(packages)


def ensure_host_packages(echo: object = print) -> None:
    """Install the Debian packages the cluster needs (root and apt-get required), or say what is missing."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the local cluster needs root (it creates network namespaces, cgroups and mounts): run as root"
        )
    missing = missing_packages()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise PrerequisiteError(
            f"the local cluster needs {', '.join(missing)} and this machine has no apt-get: install them"
        )
    assert callable(echo)
    echo(f"installing Debian packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=False)
        if result.returncode != 0:
            raise PrerequisiteError(
                f"`{' '.join(argv)}` failed: {(result.stderr or result.stdout).strip()[-500:]}"
            )
    still = missing_packages()
    if still:
        raise PrerequisiteError(f"after apt-get install, still missing: {', '.join(still)}")
