"""e2e tier: a kind cluster with the whole platform, driven like a user would.

Needs a working Docker engine (``docker info``), kind, kubectl and helm. kind comes from
``--kind-bin`` or PATH, kubectl from ``--kind-kubectl-bin``, .cache/bin (``make tools``) or PATH,
helm from HELM, .cache/bin or PATH. Without one of them every e2e test is skipped with one reason.

Settings (environment): E2E_CLUSTER (kind cluster name, default userstream-e2e; pytest-kind's
``--cluster-name`` wins), E2E_SKIP_BUILD=1 (use images already built with ``make images``),
E2E_RECORDS (users to ingest, default 500), E2E_AIRFLOW_USERNAME / E2E_AIRFLOW_PASSWORD (default
admin / admin). ``--keep-cluster`` keeps the cluster afterwards for ``make status``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kind_support import Cluster, dump_diagnostics

REPO = Path(__file__).resolve().parents[2]


def _which(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if not candidate:
            continue
        if os.sep in candidate:
            if os.access(candidate, os.X_OK):
                return candidate
        elif found := shutil.which(candidate):
            return found
    return None


def _docker_works() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def tools(request: pytest.FixtureRequest) -> dict[str, str]:
    if not _docker_works():
        pytest.skip("e2e needs a working Docker engine: `docker info` fails or docker is absent")
    found = {
        "kind": _which(request.config.getoption("kind_bin"), "kind"),
        "kubectl": _which(
            request.config.getoption("kind_kubectl_bin"),
            os.environ.get("KUBECTL"),
            str(REPO / ".cache/bin/kubectl"),
            "kubectl",
        ),
        "helm": _which(os.environ.get("HELM"), str(REPO / ".cache/bin/helm"), "helm"),
    }
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.skip(f"e2e needs {', '.join(missing)} (kind: --kind-bin or PATH; kubectl/helm: make tools)")
    return {name: str(path) for name, path in found.items()}


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tools: dict[str, str]) -> Iterator[Cluster]:
    name = request.config.getoption("cluster_name")
    if name == "pytest-kind":  # pytest-kind's default: use ours
        name = os.environ.get("E2E_CLUSTER", "userstream-e2e")
    kubeconfig = request.config.getoption("kubeconfig")
    kind_cluster = Cluster.create(
        name=name,
        kind=tools["kind"],
        kubectl=tools["kubectl"],
        helm=tools["helm"],
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        config_file=REPO / "k8s" / "kind-config.yaml",
    )
    yield kind_cluster
    if not request.config.getoption("keep_cluster"):
        kind_cluster.delete()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in {"setup", "call"} and item.get_closest_marker("e2e"):
        cluster = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
        if isinstance(cluster, Cluster):
            folder = dump_diagnostics(cluster, item.name)
            report.sections.append(("kubernetes diagnostics", f"written to {folder}"))
