"""Pure helpers of the DAGs: configuration from the environment, SparkApplication state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dags"))

from userstream.settings import Settings, SettingsError, load_settings
from userstream_dags import pods
from userstream_dags.config import chart_objects
from userstream_dags.spark import describe_state


def dag_settings(monkeypatch: pytest.MonkeyPatch, **environ: str) -> Settings:
    """The settings a DAG file loads on Airflow components with these variables."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_defaults_match_the_chart_names(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dag_settings(monkeypatch)
    objects = chart_objects(settings)
    assert settings.dag_namespace == "userstream"
    assert objects.service_account == "userstream-ingest"
    assert objects.settings_configmap == "userstream-settings"
    assert objects.kafka_user_secret == "userstream-ingest"
    assert objects.postgres_secret == "userstream-staging-app"
    assert objects.spark_application == "userstream-stream"
    assert settings.dag_in_cluster is None


def test_environment_overrides_with_types(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dag_settings(
        monkeypatch,
        USERSTREAM_DAG_IN_CLUSTER="false",
        USERSTREAM_DAG_INGEST_DEADLINE_SECONDS="5",
        USERSTREAM_DAG_INGEST_IMAGE="userstream-ingest:dev",
        USERSTREAM_DAG_POSTGRES_SECRET="",  # blank: the chart's name
    )
    assert settings.dag_in_cluster is False
    assert settings.dag_ingest_deadline_seconds == 5
    assert settings.dag_ingest_image == "userstream-ingest:dev"
    assert chart_objects(settings).postgres_secret == "userstream-staging-app"
    assert dag_settings(monkeypatch, USERSTREAM_DAG_IN_CLUSTER="auto").dag_in_cluster is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("USERSTREAM_DAG_INGEST_DEADLINE_SECONDS", "soon", "valid integer"),
        ("USERSTREAM_DAG_INGEST_DEADLINE_SECONDS", "0", "greater than or equal to 1"),
        ("USERSTREAM_DAG_IN_CLUSTER", "maybe", "valid boolean"),
        ("USERSTREAM_DAG_NAMESPACE", "", "at least 1 character"),
        ("USERSTREAM_DAG_NAMESPCE", "x", "did you mean USERSTREAM_DAG_NAMESPACE"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        dag_settings(monkeypatch, **{name: value})
    assert name in str(info.value)


def _app(state: str | None, **extra: object) -> dict[str, object]:
    status: dict[str, object] = {"executorState": {"exec-1": "RUNNING", "exec-2": "RUNNING"}}
    if state is not None:
        status["applicationState"] = {"state": state, **extra}
    return {"metadata": {"name": "userstream-stream", "namespace": "userstream"}, "status": status}


def test_running_application_is_healthy() -> None:
    running, message = describe_state(_app("RUNNING"))
    assert running
    assert "2 running executor(s)" in message


def test_failed_application_reports_the_operator_message() -> None:
    running, message = describe_state(_app("FAILED", errorMessage="driver OOMKilled"))
    assert not running
    assert "userstream/userstream-stream is FAILED" in message
    assert "driver OOMKilled" in message


def test_application_without_status_is_not_running() -> None:
    running, message = describe_state({"metadata": {"name": "userstream-stream"}})
    assert not running
    assert "no status yet" in message


def test_names_derive_from_the_chart_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart names its objects after userstream.fullname: the release when it contains
    "userstream", else <release>-userstream."""
    other = chart_objects(dag_settings(monkeypatch, USERSTREAM_DAG_RELEASE="etl"))
    assert other.service_account == "etl-userstream-ingest"
    assert other.settings_configmap == "etl-userstream-settings"
    assert other.kafka_user_secret == "etl-userstream-ingest"
    assert other.kafka_ca_secret == "etl-userstream-kafka-cluster-ca-cert"
    assert other.postgres_secret == "etl-userstream-staging-app"
    assert other.kafka_health_secret == "etl-userstream-health"
    assert other.spark_application == "etl-userstream-stream"
    assert chart_objects(load_settings(dag_release="userstream-b")).spark_application == "userstream-b-stream"
    explicit = dag_settings(monkeypatch, USERSTREAM_DAG_RELEASE="etl", USERSTREAM_DAG_POSTGRES_SECRET="pg")
    assert chart_objects(explicit).postgres_secret == "pg"


def test_without_kafka_tls_no_ca_is_mounted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dag_settings(monkeypatch, USERSTREAM_DAG_KAFKA_TLS="false")
    assert settings.dag_kafka_tls is False
    assert [v.name for v in pods.ingest_volumes(settings)] == ["tmp"]
    assert [m.name for m in pods.ingest_mounts(settings)] == ["tmp"]
    monkeypatch.delenv("USERSTREAM_DAG_KAFKA_TLS")
    assert [v.name for v in pods.ingest_volumes(load_settings())] == ["kafka-ca", "tmp"]


def test_the_ca_secret_key_becomes_the_file_the_settings_configmap_names() -> None:
    """Whatever its key in the Secret (kafka.external.caSecret.key), the CA is mounted as the file
    the chart's ConfigMap gives the pods as USERSTREAM_KAFKA_SSL_CAFILE; the DAG sets no path."""
    settings = load_settings(dag_kafka_ca_key="ca.pem")
    (volume, _) = pods.ingest_volumes(settings)
    assert [(item.key, item.path) for item in volume.secret.items] == [("ca.pem", "ca.crt")]
    (mount, _) = pods.ingest_mounts(settings)
    assert f"{mount.mount_path}/ca.crt" == str(pods.KAFKA_CA_FILE)
    assert "USERSTREAM_KAFKA_SSL_CAFILE" not in {env.name for env in pods.ingest_env(settings)}
