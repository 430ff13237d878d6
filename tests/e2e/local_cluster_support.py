"""The project's own cluster (``userstream cluster``) as an e2e cluster provider.

Same surface as :class:`kind_support.Cluster` (kubectl, helm, images, secrets, diagnostics), so the
e2e tests run unchanged on kind (Docker) and on this machine (containerd and kubelets in network
namespaces, no Docker). The session brings the cluster up when it is not running and takes it down
afterwards, undoing every host change; a cluster that was already running is left running.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kind_support import NAMESPACE, REPO, E2EError

from userstream.cluster import host, images, layout
from userstream.cluster.cluster import OUTSIDE_PATHS, LocalCluster
from userstream.settings import Settings


# --- what the host looks like: every respect in which ``up`` may change it, compared before ``up``
# and after ``down`` ------------------------------------------------------------------------------
def host_snapshot(cluster: LocalCluster) -> dict[str, object]:
    """The host state the cluster may touch, to compare before ``up`` and after ``down``: links,
    network namespaces, iptables rules, the kubelets' global sysctls, mount points under the state
    folder, /run, /var and the cgroup root (elsewhere other programs' mounts come and go), top-level
    cgroups, processes whose command line names the state folder, and which of the paths outside
    the state folder ``up`` may create exist."""
    state_dir = cluster.layout.state_dir
    mount_roots = [state_dir, Path("/run"), Path("/var"), Path("/sys/fs/cgroup")]
    paths = [*OUTSIDE_PATHS, host.RUN_NETNS, host.CNI_RESULTS]
    links = host.run(["ip", "-o", "link", "show"], check=False).stdout
    rules = host.run(["iptables-save"], check=False).stdout if shutil.which("iptables-save") else ""
    mounts = [str(p) for p in host.mountpoints_under(mount_roots)]
    cgroups = sorted(
        f"{h.name}/{c.name}"
        for h in (host.CGROUP_ROOT.iterdir() if host.CGROUP_ROOT.is_dir() else [])
        if h.is_dir() and not h.is_symlink()
        for c in h.iterdir()
        if c.is_dir()
    )
    values = {}
    for name in layout.KUBELET_GLOBAL_SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = (host.PROC_SYS / name).read_text().strip()
    return {
        "links": sorted(
            line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line
        ),
        "netns": sorted(p.name for p in host.RUN_NETNS.iterdir()) if host.RUN_NETNS.is_dir() else [],
        "iptables": sorted(
            line
            for line in rules.splitlines()
            if line and not line.startswith(("#", ":")) and line != "COMMIT"
        ),
        "sysctls": values,
        "mounts": sorted(mounts),
        "cgroups": cgroups,
        "processes": sorted(host.processes_matching(str(state_dir))),
        "paths": sorted(str(p) for p in paths if p.exists()),
    }


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """What changed between two snapshots, one line per kind of state."""
    changed = []
    for key in before:
        if before[key] != after.get(key):
            changed.append(f"{key}: before {before[key]!r}, after {after.get(key)!r}")
    return changed


@dataclass
class LocalClusterProvider:
    cluster: LocalCluster
    kubectl_bin: str
    helm_bin: str
    started_here: bool = False
    host_before: dict[str, object] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)

    name = "local"
    # pods reach servers on this machine (the local stack) at the host end of the cluster's link
    host_address = layout.HOST_ADDRESS

    @classmethod
    def start(cls, settings: Settings, *, kubectl: str, helm: str) -> LocalClusterProvider:
        cluster = LocalCluster(settings)
        running = all(c.running_record() is not None for c in cluster.components)
        before = {} if running else host_snapshot(cluster)
        if not running:
            try:
                cluster.up()
            except BaseException:
                cluster.down()
                raise
        return cls(
            cluster=cluster, kubectl_bin=kubectl, helm_bin=helm, started_here=not running, host_before=before
        )

    def stop(self) -> list[str]:
        """Take the cluster down if this session started it; return what differs on the host."""
        if not self.started_here:
            return []
        self.cluster.down()
        return differences(self.host_before, host_snapshot(self.cluster))

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.layout.kubeconfig

    @property
    def path(self) -> Path:
        return self.cluster.layout.state_dir

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECTL": self.kubectl_bin,
            "HELM": self.helm_bin,
        }

    def kubectl(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [self.kubectl_bin, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, ["kubectl", *args], result.stdout, result.stderr
            )
        return result.stdout

    def kubectl_stdin(self, stdin: str, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [self.kubectl_bin, *args], env=self.env, input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise E2EError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def run(self, *command: str, timeout: float = 3600) -> None:
        subprocess.run(list(command), cwd=REPO, env=self.env, check=True, timeout=timeout)

    def helm(self, *args: str, timeout: float = 3600) -> None:
        self.run(self.helm_bin, *args, timeout=timeout)

    def load_images(self, names: list[str]) -> list[str]:
        """Build (cached) and load the project's images; return their references."""
        wanted = [n for n in names if n not in self.loaded]
        if wanted:
            tars = self.cluster.build_images(wanted)
            self.cluster.load_images(tars)
            self.loaded.update(wanted)
        return [images.image_ref(name) for name in names]

    def wait_condition(
        self, resource: str, condition: str, timeout_s: int, namespace: str = NAMESPACE
    ) -> None:
        try:
            self.kubectl(
                "wait", "-n", namespace, resource, f"--for=condition={condition}", f"--timeout={timeout_s}s",
                timeout=timeout_s + 60,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise E2EError(
                f"{resource} in {namespace} did not become {condition} within {timeout_s} s: {exc.stderr}"
            ) from exc

    def secret_value(self, name: str, key: str, namespace: str = NAMESPACE) -> str:
        data = self.kubectl_json("get", "secret", "-n", namespace, name)["data"]
        return base64.b64decode(data[key]).decode()
