"""e2e tier: a real cluster with the platform installed, driven like a user would.

One suite, two cluster providers (``E2E_PROVIDER=kind|local``; default: kind where a Docker engine
works, else the project's own cluster where the user is root on Linux):

- ``kind``: a working Docker engine (``docker info``), kind, kubectl and helm. kind comes from
  ``--kind-bin`` or PATH, kubectl from ``--kind-kubectl-bin``, .cache/bin (``make tools``) or PATH,
  helm from HELM, .cache/bin or PATH.
- ``local``: ``userstream cluster`` (containerd and two kubelets in network namespaces of their own;
  docs/local-cluster.md), images built here from images/*/Dockerfile. Needs root: a laptop's
  ``make test`` never reconfigures the host by surprise.

Tests that need only a cluster take the ``e2e_cluster`` fixture; the pipeline journey
(test_pipeline.py) takes ``platform``, the platform of the active provider (e2e_platform.Platform:
kind_platform.KindPlatform or local_platform.LocalPlatform), so its tests and assertions are the
same on both. Without a provider every e2e test is skipped with one reason.

Settings (environment): E2E_CLUSTER (kind cluster name, default userstream-e2e; pytest-kind's
``--cluster-name`` wins), E2E_SKIP_BUILD=1 (use images already built with ``make images``),
E2E_RECORDS (users per DAG run, default 400), E2E_AIRFLOW_USERNAME / E2E_AIRFLOW_PASSWORD (default
admin / admin). ``--keep-cluster`` keeps the cluster afterwards for ``make status``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kind_support import Cluster, dump_diagnostics

REPO = Path(__file__).resolve().parents[2]
# the DAGs' helpers (userstream_dags) are shared by the DAG files and these tests
if str(REPO / "dags") not in sys.path:
    sys.path.insert(0, str(REPO / "dags"))


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


def provider_name() -> str:
    """kind, local, or a skip reason (starting with 'skip:')."""
    wanted = os.environ.get("E2E_PROVIDER", "auto")
    if wanted not in ("auto", "kind", "local"):
        raise pytest.UsageError(f"E2E_PROVIDER={wanted!r}: choose kind, local or auto")
    if wanted == "kind" or (wanted == "auto" and _docker_works()):
        return "kind"
    if os.geteuid() != 0 or sys.platform != "linux":
        return (
            "skip: e2e needs a working Docker engine (kind) or root on Linux (the project's own cluster "
            "reconfigures network namespaces and cgroups; a non-root `make test` never does)"
        )
    return "local"


def _kube_tools() -> dict[str, str | None]:
    return {
        "kubectl": _which(os.environ.get("KUBECTL"), str(REPO / ".cache/bin/kubectl"), "kubectl"),
        "helm": _which(os.environ.get("HELM"), str(REPO / ".cache/bin/helm"), "helm"),
    }


@pytest.fixture(scope="session")
def e2e_cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The cluster of this run, whichever provider: kind (Docker) or the project's own."""
    name = provider_name()
    if name.startswith("skip:"):
        pytest.skip(name.removeprefix("skip: "))
    if name == "kind":
        yield request.getfixturevalue("cluster")
        return
    from local_cluster_support import LocalClusterProvider

    from userstream.errors import PrerequisiteError
    from userstream.settings import load_settings

    found = _kube_tools()
    missing = sorted(k for k, v in found.items() if v is None)
    if missing:
        pytest.skip(
            f"e2e on the project's own cluster needs {', '.join(missing)}: `make tools` installs them"
        )
    try:
        provider = LocalClusterProvider.start(
            load_settings(), kubectl=str(found["kubectl"]), helm=str(found["helm"])
        )
    except PrerequisiteError as exc:
        pytest.skip(f"the project's own cluster cannot run here: {exc}")
    try:
        yield provider
    finally:
        left = provider.stop()
    # the host is as it was: no link, namespace, rule, sysctl, mount, cgroup, process or folder left
    assert not left, "the project's own cluster left the host changed:\n" + "\n".join(left)


@pytest.fixture(scope="session")
def tools(request: pytest.FixtureRequest) -> dict[str, str]:
    if not _docker_works():
        pytest.skip(
            "the kind provider needs a working Docker engine (kind nodes are containers; Strimzi, "
            "K8ssandra and the Airflow chart come from image registries): `docker info` fails or docker "
            "is absent"
        )
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
        funcargs = item.funcargs if hasattr(item, "funcargs") else {}
        cluster = funcargs.get("cluster") or funcargs.get("e2e_cluster")
        if cluster is None and funcargs.get("platform") is not None:
            cluster = getattr(funcargs["platform"], "cluster", None)
        if cluster is not None and hasattr(cluster, "kubectl"):
            folder = dump_diagnostics(cluster, item.name)
            report.sections.append(("kubernetes diagnostics", f"written to {folder}"))
