"""Driving a kind cluster for the e2e tier: kind, kubectl and helm as subprocesses, Airflow's REST
API through a port-forward, and diagnostics when something fails."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from pytest_kind import KindCluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "userstream"
T = TypeVar("T")


class E2EError(AssertionError):
    """A step of the e2e run failed; the message says which and what was seen."""


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, interval_s: float = 5.0) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except E2EError:
            raise
        except Exception as exc:  # a probe may fail while things start
            last_error = exc
        else:
            if result is not None:
                return result
        time.sleep(interval_s)
    raise E2EError(f"timed out after {timeout_s:.0f} s waiting for {what}; last error: {last_error!r}")


@dataclass
class Cluster:
    kind_cluster: KindCluster
    helm_bin: str

    @classmethod
    def create(
        cls,
        *,
        name: str,
        kind: str,
        kubectl: str,
        helm: str,
        kubeconfig: Path | None,
        config_file: Path,
    ) -> Cluster:
        kind_cluster = KindCluster(name, kubeconfig, kind_path=Path(kind), kubectl_path=Path(kubectl))
        existing = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True, check=True)
        if name in existing.stdout.split():
            # reuse (e.g. --keep-cluster from an earlier run): refresh the kubeconfig pytest-kind reads
            subprocess.run(
                [
                    kind,
                    "export",
                    "kubeconfig",
                    "--name",
                    name,
                    "--kubeconfig",
                    str(kind_cluster.kubeconfig_path),
                ],
                check=True,
            )
        kind_cluster.create(config_file=config_file)
        return cls(kind_cluster=kind_cluster, helm_bin=helm)

    @property
    def name(self) -> str:
        return self.kind_cluster.name

    @property
    def path(self) -> Path:
        return Path(self.kind_cluster.path)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kind_cluster.kubeconfig_path.resolve()),
            "KUBECTL": str(self.kind_cluster.kubectl_path),
            "HELM": self.helm_bin,
        }

    def delete(self) -> None:
        self.kind_cluster.delete()

    def kubectl(self, *args: str, timeout: float = 600) -> str:
        return self.kind_cluster.kubectl(*args, timeout=timeout)

    def kubectl_stdin(self, stdin: str, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [str(self.kind_cluster.kubectl_path), *args], env=self.env, input=stdin, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise E2EError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def load_images(self, names: list[str]) -> list[str]:
        """Build the project's images with docker and load them into the kind nodes."""
        from userstream.cluster import images

        refs = []
        for name in names:
            ref = images.image_ref(name)
            if os.environ.get("E2E_SKIP_BUILD") != "1":
                self.run("docker", "build", "-f", f"images/{name}/Dockerfile", "-t", ref, ".")
            self.load_image(ref)
            refs.append(ref)
        return refs

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def run(self, *command: str, timeout: float = 3600) -> None:
        """Run a command against this cluster, streaming its output into the test log."""
        subprocess.run(list(command), cwd=REPO, env=self.env, check=True, timeout=timeout)

    def helm(self, *args: str, timeout: float = 3600) -> None:
        self.run(self.helm_bin, *args, timeout=timeout)

    def load_image(self, image: str) -> None:
        self.kind_cluster.load_docker_image(image)

    def wait_condition(
        self, resource: str, condition: str, timeout_s: int, namespace: str = NAMESPACE
    ) -> None:
        try:
            self.kubectl(
                "wait",
                "-n",
                namespace,
                resource,
                f"--for=condition={condition}",
                f"--timeout={timeout_s}s",
                timeout=timeout_s + 60,
            )
        except subprocess.CalledProcessError as exc:
            raise E2EError(
                f"{resource} in {namespace} did not become {condition} within {timeout_s} s"
            ) from exc

    def secret_value(self, name: str, key: str, namespace: str = NAMESPACE) -> str:
        data = self.kubectl_json("get", "secret", "-n", namespace, name)["data"]
        return base64.b64decode(data[key]).decode()

    @contextmanager
    def port_forward(self, target: str, remote_port: int, namespace: str = NAMESPACE) -> Iterator[int]:
        with self.kind_cluster.port_forward(target, remote_port, "-n", namespace) as local_port:
            yield local_port


class AirflowClient:
    """The parts of Airflow 3's REST API (/api/v2, JWT from /auth/token) the e2e run needs. The
    Airflow chart configures the FAB auth manager (chart values.yaml config.core.auth_manager), whose
    POST /auth/token answers 201 with access_token (providers/fab .../api_fastapi/routes/login.py)."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        response = requests.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        if response.status_code not in (200, 201):
            raise E2EError(
                f"Airflow refused a token for {username!r}: "
                f"HTTP {response.status_code} {response.text[:300]}; "
                "set E2E_AIRFLOW_USERNAME / E2E_AIRFLOW_PASSWORD to the Airflow release's admin user"
            )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        if not response.ok:
            raise E2EError(f"{method} /api/v2{path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def dag(self, dag_id: str) -> Any:
        return self._call("GET", f"/dags/{dag_id}")

    def find_dag(self, dag_id: str) -> Any | None:
        """The DAG, or None while the DAG processor has not parsed it yet (HTTP 404)."""
        response = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=30)
        if response.status_code == 404:
            return None
        if not response.ok:
            raise E2EError(f"GET /api/v2/dags/{dag_id}: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def import_errors(self) -> list[Any]:
        return list(self._call("GET", "/importErrors").get("import_errors", []))

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        instances = self._call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")[
            "task_instances"
        ]
        return {ti["task_id"]: str(ti["state"]) for ti in instances}

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The whole log of the task's latest try. Airflow 3.3.2 (airflow/api_fastapi/core_api/routes/
        public/log.py, datamodels/log.py): GET .../taskInstances/{task_id}/logs/{try_number} with
        full_content=true and Accept: application/json answers {content: [StructuredLogMessage, whose
        text is `event`, or str, ...]}; GET .../taskInstances/{task_id} carries the try_number."""
        run = quote(run_id, safe="")
        instance = self._call("GET", f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}")
        try_number = int(instance.get("try_number") or 1)
        answer = self._call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        lines = []
        for item in answer.get("content", []):
            if isinstance(item, dict):
                lines.append(str(item.get("event", "")))
            else:
                lines.append(str(item))
        return "\n".join(lines)


def dump_diagnostics(cluster: Any, test_name: str) -> Path:
    """Write what a person would look at first into <cluster folder>/diagnostics/<test>/: overview,
    events, ``kubectl describe`` of every pod and the logs of every pod (any namespace)."""
    folder = cluster.path / "diagnostics" / test_name
    folder.mkdir(parents=True, exist_ok=True)
    commands = {
        "overview.txt": [
            "get",
            "all,pvc,sparkapplications,kafka,kafkatopics,kafkausers,k8ssandraclusters,"
            "cassandradatacenters,clusters.postgresql.cnpg.io",
            "-A",
            "-o",
            "wide",
        ],
        "events.txt": ["get", "events", "-A", "--sort-by=.lastTimestamp"],
        "describe-pods.txt": ["describe", "pods", "-A"],
        "describe-sparkapplication.txt": ["describe", "sparkapplications", "-n", NAMESPACE],
    }
    for filename, args in commands.items():
        try:
            output = cluster.kubectl(*args, timeout=120)
        except Exception as exc:
            output = f"kubectl {' '.join(args)} failed: {exc}"
        (folder / filename).write_text(output, encoding="utf-8")
    try:
        pods = cluster.kubectl_json("get", "pods", "-A")["items"]
    except Exception:
        pods = []
    for pod in pods:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        try:
            logs = cluster.kubectl(
                "logs", "-n", namespace, name, "--all-containers", "--tail=300", timeout=60
            )
        except Exception as exc:
            logs = f"no logs: {exc}"
        (folder / f"logs-{namespace}-{name}.txt").write_text(logs, encoding="utf-8")
    print(f"\nkubernetes diagnostics of {test_name}: {folder}")
    print((folder / "overview.txt").read_text(encoding="utf-8")[-4000:])
    return folder
