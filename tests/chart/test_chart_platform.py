"""The upstream operator and Airflow releases: values files parse and set what userstream relies on,
and install.sh installs each with the version pinned in versions.env."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from chart_helpers import PLATFORM, VERSIONS

pytestmark = pytest.mark.chart

RELEASES = ["cert-manager", "strimzi", "spark-operator", "k8ssandra-operator", "cloudnative-pg", "airflow"]


def _values(name: str) -> dict[str, Any]:
    return yaml.safe_load((PLATFORM / f"{name}.values.yaml").read_text())


@pytest.mark.parametrize("name", RELEASES)
def test_values_file_parses(name: str) -> None:
    assert isinstance(_values(name), dict)


def test_strimzi_watches_userstream() -> None:
    values = _values("strimzi")
    assert values["watchNamespaces"] == ["userstream"]
    assert values["watchAnyNamespace"] is False


def test_spark_operator_runs_jobs_in_userstream_with_our_rbac() -> None:
    values = _values("spark-operator")
    assert values["spark"]["jobNamespaces"] == ["userstream"]
    assert values["spark"]["serviceAccount"]["create"] is False
    assert values["spark"]["rbac"]["create"] is False
    assert values["webhook"]["enable"] is True


def test_k8ssandra_operator_manages_other_namespaces() -> None:
    assert _values("k8ssandra-operator")["global"]["clusterScoped"] is True


def test_cert_manager_installs_its_crds() -> None:
    assert _values("cert-manager")["crds"]["enabled"] is True


def test_airflow_uses_our_image_and_baked_dags() -> None:
    values = _values("airflow")
    assert values["images"]["airflow"]["repository"] == "userstream-airflow"
    assert values["defaultAirflowRepository"] == "userstream-airflow"
    # the tag is the build's content tag, set by install.sh and skaffold, never a fixed one
    assert "tag" not in values["images"]["airflow"]
    assert "defaultAirflowTag" not in values
    assert values["airflowVersion"] == VERSIONS["AIRFLOW_VERSION"]
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["USERSTREAM_DAG_IN_CLUSTER"] == "true"
    # install.sh names the namespace of its NAMESPACE (tests/unit/deploy), never a fixed one here
    assert "USERSTREAM_DAG_NAMESPACE" not in env


def test_airflow_task_logs_outlive_the_worker_pods() -> None:
    """KubernetesExecutor deletes a worker pod when its task ends; without persistence (or remote
    logging) its task log goes with it."""
    persistence = _values("airflow")["logs"]["persistence"]
    assert persistence["enabled"] is True
    assert persistence["existingClaim"] == "airflow-logs", "the claim install.sh creates"
    assert "name: airflow-logs" in (PLATFORM / "install.sh").read_text()


def test_install_script_pins_every_release() -> None:
    script = (PLATFORM / "install.sh").read_text()
    expected = {
        "cert-manager": ("cert-manager", '"$CERT_MANAGER_CHART"', "CERT_MANAGER_VERSION"),
        "strimzi": ("strimzi", '"$STRIMZI_CHART"', "STRIMZI_VERSION"),
        "spark-operator": ("spark-operator", "spark-operator", "SPARK_OPERATOR_VERSION"),
        "k8ssandra-operator": ("k8ssandra-operator", "k8ssandra-operator", "K8SSANDRA_OPERATOR_VERSION"),
        "cnpg": ("cnpg-system", "cloudnative-pg", "CLOUDNATIVE_PG_CHART_VERSION"),
        "airflow": ('"$AIRFLOW_NAMESPACE"', "airflow", "AIRFLOW_CHART_VERSION"),
    }
    for release, (namespace, chart, version) in expected.items():
        pattern = (
            rf"release {re.escape(release)} {re.escape(namespace)} {re.escape(chart)} \"v?\$\{{{version}\}}\""
        )
        assert re.search(pattern, script), f"install.sh does not install {release} ({chart}) at {version}"
        assert version in VERSIONS
    for repo in (
        "https://kubeflow.github.io/spark-operator",
        "https://helm.k8ssandra.io/stable",
        "https://cloudnative-pg.github.io/charts",
        "https://airflow.apache.org",
    ):
        assert f"--repo {repo}" in script
    assert "upgrade --install" in script
    assert "--wait" in script
    for name in RELEASES:
        assert f"{name}.values.yaml" in script


def test_install_order_puts_cert_manager_first_and_airflow_last() -> None:
    script = (PLATFORM / "install.sh").read_text()
    order = re.search(r"ORDER=\(([^)]*)\)", script)
    assert order is not None
    assert order.group(1).split() == RELEASES


def test_airflow_jobs_are_not_hooks_so_helm_wait_can_finish() -> None:
    """Airflow chart 1.22.0 runs the DB migration and user creation as post-install hooks unless
    useHelmHooks is false; Helm runs post-install hooks only after --wait succeeds, and the
    scheduler/API server wait for the migration. The chart docs: with --wait set useHelmHooks and
    applyCustomEnv to false on both Jobs."""
    values = _values("airflow")
    for job in ("migrateDatabaseJob", "createUserJob"):
        assert values[job]["useHelmHooks"] is False, f"{job}.useHelmHooks must be false under --wait"
        assert values[job]["applyCustomEnv"] is False, f"{job}.applyCustomEnv must be false under --wait"
