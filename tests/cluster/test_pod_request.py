"""The pods the DAGs launch are accepted by a real kube-apiserver, when Airflow's worker asks.

Each pod is built exactly as KubernetesPodOperator builds it (``build_pod`` of
tests/unit/dags/test_pod_spec.py: templates rendered, then ``build_pod_request_obj``) and created with
``dryRun=All`` while impersonating the Airflow worker's ServiceAccount: authentication, RBAC,
admission (ServiceAccount, Pod Security ``restricted``, LimitRanger, ...) and validation all run;
nothing is stored, and no pod would run anyway (no kubelet).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_api import NAMESPACE, REPO_ROOT, KubeApiServer, api_error_message
from cluster_manifests import Outcome, bound_service_accounts, render_userstream_chart, service_account_user
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

AIRFLOW_WORKER = "airflow-worker"
POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVEL = "restricted"
DAG_PODS = {
    "ingest": ("users_ingest", "ingest_users", {"source": "randomuser", "records": 250}),
    "health": ("users_stream_health", "stream_keeps_up", {}),
}


def _build_pod_helper() -> Any:
    """``build_pod`` and ``load_dagbag`` of the unit tier, which owns how a DAG's pod is built."""
    unit_tests = str(REPO_ROOT / "tests" / "unit" / "dags")
    if unit_tests not in sys.path:
        sys.path.insert(0, unit_tests)
    try:
        from airflow_dagbag import load_dagbag
        from test_pod_spec import build_pod
    except ImportError as error:
        pytest.skip(f"cannot build the DAGs' pods ({error}): `make install` installs the airflow extra")
    return load_dagbag, build_pod


@pytest.fixture(scope="module")
def dag_pods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    load_dagbag, build_pod = _build_pod_helper()
    dagbag = load_dagbag(tmp_path_factory.mktemp("airflow-home"))
    assert not dagbag.import_errors, f"DAG import errors: {dagbag.import_errors}"
    return {name: build_pod(dagbag, *spec) for name, spec in DAG_PODS.items()}


@pytest.fixture(scope="module")
def restricted_namespace(api_client: k8s.ApiClient, applied_chart: dict[str, Outcome]) -> str:
    """Namespace userstream with the chart applied, enforcing Pod Security ``restricted``."""
    labels = {POD_SECURITY_LABEL: POD_SECURITY_LEVEL}
    k8s.CoreV1Api(api_client).patch_namespace(NAMESPACE, {"metadata": {"labels": labels}})
    return NAMESPACE


@pytest.fixture(scope="module")
def airflow_worker_user() -> str:
    """The user of Airflow's worker ServiceAccount, where the chart's RoleBinding says it lives."""
    chart = render_userstream_chart()
    if chart.problem:
        pytest.skip(chart.problem)
    bound = bound_service_accounts(chart.manifests, AIRFLOW_WORKER)
    assert bound, f"the chart binds no Role to ServiceAccount {AIRFLOW_WORKER}"
    return service_account_user(bound[0][0], AIRFLOW_WORKER)


@pytest.fixture(scope="module")
def airflow_worker_core(kube_apiserver: KubeApiServer, airflow_worker_user: str) -> Iterator[k8s.CoreV1Api]:
    """The core API as Airflow's worker ServiceAccount (the identity KubernetesPodOperator runs as)."""
    with kube_apiserver.client(impersonate=airflow_worker_user) as api_client:
        yield k8s.CoreV1Api(api_client)


def _dry_run_create(core: k8s.CoreV1Api, pod: dict[str, Any], namespace: str) -> k8s.V1Pod:
    body = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
    return core.create_namespaced_pod(namespace, body, dry_run="All", field_validation="Strict")


@pytest.mark.parametrize("pod_name", sorted(DAG_PODS))
def test_dag_pod_is_accepted_for_the_airflow_worker(
    pod_name: str,
    dag_pods: dict[str, dict[str, Any]],
    restricted_namespace: str,
    airflow_worker_user: str,
    airflow_worker_core: k8s.CoreV1Api,
) -> None:
    pod = dag_pods[pod_name]
    assert pod["metadata"]["namespace"] == restricted_namespace
    try:
        created = _dry_run_create(airflow_worker_core, pod, restricted_namespace)
    except ApiException as error:
        pytest.fail(
            f"kube-apiserver rejected the {pod_name} pod of DAG {DAG_PODS[pod_name][0]} created by "
            f"{airflow_worker_user} in {restricted_namespace} (Pod Security {POD_SECURITY_LEVEL}): "
            f"{api_error_message(error)}"
        )
    # admission ran: the ServiceAccount plugin resolved the pod's account, defaults were applied
    assert created.spec.service_account_name == pod["spec"]["serviceAccountName"]
    assert created.spec.containers[0].termination_message_path


@pytest.mark.parametrize("namespace", ["kube-system", "default"])
def test_airflow_worker_cannot_launch_the_pod_elsewhere(
    namespace: str,
    dag_pods: dict[str, dict[str, Any]],
    restricted_namespace: str,
    airflow_worker_core: k8s.CoreV1Api,
) -> None:
    with pytest.raises(ApiException) as rejected:
        _dry_run_create(airflow_worker_core, dag_pods["ingest"], namespace)
    assert rejected.value.status == 403, api_error_message(rejected.value)


def test_pod_security_rejects_a_pod_without_the_dag_security_context(
    dag_pods: dict[str, dict[str, Any]],
    restricted_namespace: str,
    airflow_worker_core: k8s.CoreV1Api,
) -> None:
    """The restricted namespace really enforces: the same pod, stripped of its security context, fails."""
    pod = copy.deepcopy(dag_pods["ingest"])
    del pod["spec"]["securityContext"]
    for container in pod["spec"]["containers"]:
        container.pop("securityContext", None)
    with pytest.raises(ApiException) as rejected:
        _dry_run_create(airflow_worker_core, pod, restricted_namespace)
    assert rejected.value.status == 403, api_error_message(rejected.value)
    assert f'violates PodSecurity "{POD_SECURITY_LEVEL}' in api_error_message(rejected.value)


def _pod_with(pod: dict[str, Any], change: str) -> dict[str, Any]:
    """The DAG's ingest pod with one thing a DAG must not do."""
    pod = copy.deepcopy(pod)
    container = pod["spec"]["containers"][0]
    superuser = "userstream-cassandra-superuser"
    if change == "mounts the Cassandra superuser":
        pod["spec"]["volumes"].append({"name": "su", "secret": {"secretName": superuser}})
        container["volumeMounts"].append({"name": "su", "mountPath": "/var/run/su", "readOnly": True})
    elif change == "reads the Cassandra superuser":
        ref = {"secretKeyRef": {"name": superuser, "key": "password"}}
        container["env"].append({"name": "STOLEN", "valueFrom": ref})
    elif change == "loads a Kafka user it is not":
        container.setdefault("envFrom", []).append({"secretRef": {"name": "userstream-stream"}})
    elif change == "runs as the Spark driver's ServiceAccount":
        pod["spec"]["serviceAccountName"] = "userstream-spark"
    else:
        raise AssertionError(change)
    return pod


@pytest.mark.parametrize(
    "change",
    [
        "mounts the Cassandra superuser",
        "reads the Cassandra superuser",
        "loads a Kafka user it is not",
        "runs as the Spark driver's ServiceAccount",
    ],
)
def test_a_dag_pod_cannot_reach_other_secrets_of_the_namespace(
    change: str,
    dag_pods: dict[str, dict[str, Any]],
    restricted_namespace: str,
    airflow_worker_core: k8s.CoreV1Api,
) -> None:
    """RBAC lets Airflow create pods in userstream but cannot limit what they mount: the chart's
    ValidatingAdmissionPolicy does (Airflow's own namespace keeps its Secrets away; this keeps the
    data plane's Secrets away from any DAG)."""
    with pytest.raises(ApiException) as rejected:
        _dry_run_create(airflow_worker_core, _pod_with(dag_pods["ingest"], change), restricted_namespace)
    message = api_error_message(rejected.value)
    assert rejected.value.status in {403, 422}, message
    assert "pods created by Airflow" in message, message


def test_the_admission_policy_binds_only_airflow(
    api_client: k8s.ApiClient, dag_pods: dict[str, dict[str, Any]], restricted_namespace: str
) -> None:
    """The same pod created by an administrator (not one of Airflow's ServiceAccounts) is accepted."""
    pod = _pod_with(dag_pods["ingest"], "mounts the Cassandra superuser")
    _dry_run_create(k8s.CoreV1Api(api_client), pod, restricted_namespace)
