"""The pods the DAGs launch, built exactly as the KubernetesPodOperator builds them, but without a
cluster: templates rendered with a minimal context, then ``build_pod_request_obj``. Each pod is
validated against the Kubernetes schema of versions.env's KUBERNETES_VERSION (strict: unknown
fields are errors)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from airflow_dagbag import load_dagbag
from kubernetes.client import ApiClient

from userstream.versions import version

SECRET_ENV = {
    "USERSTREAM_KAFKA_PASSWORD": ("userstream-ingest", "password"),
    "USERSTREAM_POSTGRES_DSN": ("userstream-staging-app", "uri"),
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_dagbag(tmp_path_factory.mktemp("airflow-home"))


def build_pod(dagbag: Any, dag_id: str, task_id: str, params: dict[str, Any]) -> dict[str, Any]:
    task = copy.deepcopy(dagbag.dags[dag_id].get_task(task_id))
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, map_index=-1, try_number=1)
    context: dict[str, Any] = {
        "params": params,
        "ti": ti,
        "task_instance": ti,
        "run_id": "manual__2026-11-21T12:00:00+00:00",
        "dag": dagbag.dags[dag_id],
    }
    task.render_template_fields(context)
    pod = task.build_pod_request_obj(context, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


@pytest.fixture(scope="module")
def ingest_pod(dagbag: Any) -> dict[str, Any]:
    return build_pod(dagbag, "users_ingest", "ingest_users", {"source": "randomuser", "records": 250})


@pytest.fixture(scope="module")
def health_pod(dagbag: Any) -> dict[str, Any]:
    return build_pod(dagbag, "users_stream_health", "stream_keeps_up", {})


def secret_refs(env: list[Any]) -> dict[str, tuple[str, str]]:
    """Variable name -> (Secret, key) of a pod's variables that come from Secrets."""
    return {e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key) for e in env}


def kubernetes_version() -> str:
    return version("KUBERNETES_VERSION")


@pytest.mark.parametrize("pod_fixture", ["ingest_pod", "health_pod"])
def test_pod_is_valid_for_the_pinned_kubernetes(pod_fixture: str, request: pytest.FixtureRequest) -> None:
    pod = request.getfixturevalue(pod_fixture)
    kubernetes_validate.validate(pod, kubernetes_version(), strict=True)


@pytest.mark.parametrize("pod_fixture", ["ingest_pod", "health_pod"])
def test_pod_runs_as_non_root_without_api_access(pod_fixture: str, request: pytest.FixtureRequest) -> None:
    pod = request.getfixturevalue(pod_fixture)
    spec = pod["spec"]
    assert pod["metadata"]["namespace"] == "userstream"
    assert spec["serviceAccountName"] == "userstream-ingest"
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "userstream-ingest:0.1.0"
    assert container["envFrom"] == [{"configMapRef": {"name": "userstream-settings"}}]
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_ingest_pod_args_come_from_the_params(ingest_pod: dict[str, Any]) -> None:
    (container,) = ingest_pod["spec"]["containers"]
    # no seed param: the run id, so a retry of the run fetches the same users
    assert container["args"] == [
        "ingest", "--source", "randomuser", "--records", "250", "--seed", "manual__2026-11-21T12:00:00+00:00",
    ]  # fmt: skip
    assert not container.get("command"), "the image's ENTRYPOINT (userstream) runs"


def test_ingest_pod_labels_identify_the_task(ingest_pod: dict[str, Any]) -> None:
    labels = ingest_pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "userstream-ingest"
    assert labels["app.kubernetes.io/part-of"] == "userstream"
    assert labels["dag_id"] == "users_ingest"
    assert labels["task_id"] == "ingest_users"


def test_ingest_pod_reads_secrets_by_reference(ingest_pod: dict[str, Any]) -> None:
    (container,) = ingest_pod["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    for name, (secret, key) in SECRET_ENV.items():
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
        assert "value" not in env[name]
    assert env["USERSTREAM_KAFKA_USERNAME"]["value"] == "userstream-ingest"
    # where the CA is: the settings ConfigMap says so (tests/chart keeps it where the pod mounts it)
    assert "USERSTREAM_KAFKA_SSL_CAFILE" not in env


def test_ingest_pod_mounts_the_kafka_cluster_ca(ingest_pod: dict[str, Any]) -> None:
    (container,) = ingest_pod["spec"]["containers"]
    volumes = {volume["name"]: volume for volume in ingest_pod["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    ca_mount = mounts["/etc/userstream/kafka-ca"]
    assert ca_mount["readOnly"] is True
    ca_volume = volumes[ca_mount["name"]]["secret"]
    assert ca_volume["secretName"] == "userstream-kafka-cluster-ca-cert"
    assert ca_volume["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "a writable /tmp on a read-only root"


def test_health_pod_reads_the_health_kafka_user_by_reference(health_pod: dict[str, Any]) -> None:
    (container,) = health_pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "userstream.stream.health_check"]
    env = {item["name"]: item for item in container["env"]}
    # the chart's Describe-only KafkaUser, never the ingestion's or the stream's
    assert env["USERSTREAM_KAFKA_USERNAME"]["value"] == "userstream-health"
    assert env["USERSTREAM_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "userstream-health",
        "key": "password",
    }
    assert not any(name.startswith("USERSTREAM_CASSANDRA") for name in env), "no Cassandra access"
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts == {"/etc/userstream/kafka-ca", "/tmp"}


def test_pod_follows_the_dag_configuration() -> None:
    from userstream.settings import load_settings
    from userstream_dags import pods

    settings = load_settings(
        dag_namespace="data",
        dag_ingest_image="registry.example/userstream-ingest:1.2.3",
        dag_postgres_secret="staging-app",
    )
    kwargs = pods.common_operator_kwargs(settings, component="userstream-ingest")
    assert kwargs["namespace"] == "data"
    assert kwargs["image"] == "registry.example/userstream-ingest:1.2.3"
    dsn = next(env for env in pods.ingest_env(settings) if env.name == "USERSTREAM_POSTGRES_DSN")
    assert dsn.value_from.secret_key_ref.name == "staging-app"


def test_pods_read_a_platform_kafka_and_cassandra_from_the_named_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chart's external mode: the user name comes from the Secret too, keys are configurable,
    and without a CA to mount nothing is mounted (docs/charts.md, "External Kafka, Cassandra and
    PostgreSQL")."""
    from userstream.settings import load_settings
    from userstream_dags import pods

    for name, value in {
        "USERSTREAM_DAG_KAFKA_USER_SECRET": "userstream-kafka-ingest",
        "USERSTREAM_DAG_KAFKA_USERNAME_KEY": "user",
        "USERSTREAM_DAG_KAFKA_PASSWORD_KEY": "pass",
        "USERSTREAM_DAG_KAFKA_TLS": "false",
        "USERSTREAM_DAG_POSTGRES_SECRET": "staging-db",
        "USERSTREAM_DAG_POSTGRES_DSN_KEY": "dsn",
        "USERSTREAM_DAG_KAFKA_HEALTH_SECRET": "userstream-kafka-health",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert secret_refs(pods.ingest_env(settings)) == {
        "USERSTREAM_KAFKA_USERNAME": ("userstream-kafka-ingest", "user"),
        "USERSTREAM_KAFKA_PASSWORD": ("userstream-kafka-ingest", "pass"),
        "USERSTREAM_POSTGRES_DSN": ("staging-db", "dsn"),
    }
    assert secret_refs(pods.health_env(settings)) == {
        "USERSTREAM_KAFKA_USERNAME": ("userstream-kafka-health", "user"),
        "USERSTREAM_KAFKA_PASSWORD": ("userstream-kafka-health", "pass"),
    }
    assert [volume.name for volume in pods.ingest_volumes(settings)] == ["tmp"]
    # the defaults stay Strimzi's: the KafkaUser's name is the user name
    monkeypatch.delenv("USERSTREAM_DAG_KAFKA_USER_SECRET")
    monkeypatch.delenv("USERSTREAM_DAG_KAFKA_USERNAME_KEY")
    default = {env.name: env for env in pods.ingest_env(load_settings())}
    assert default["USERSTREAM_KAFKA_USERNAME"].value == "userstream-ingest"
