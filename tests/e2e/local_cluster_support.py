"""The project's own cluster (``userstream cluster``) as an e2e cluster provider.

Same surface as :class:`kind_support.Cluster` (kubectl, helm, images, secrets, diagnostics), so the
e2e tests run unchanged on kind (Docker) and on this machine (containerd and kubelets in network
namespaces, no Docker). The session brings the cluster up when it is not running and takes it down
afterwards, undoing every host change; a cluster that was already running is left running.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kind_support import NAMESPACE, REPO, E2EError

from userstream.cluster import images, layout
from userstream.cluster.cluster import LocalCluster
from userstream.cluster.host import differences
from userstream.settings import Settings


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
        before = {} if running else cluster.host_snapshot()
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
        return differences(self.host_before, self.cluster.host_snapshot())

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
