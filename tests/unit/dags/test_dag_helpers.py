"""Pure helpers of the DAGs: configuration from the environment, SparkApplication state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dags"))

from userstream_dags.config import DagConfig, DagConfigError
from userstream_dags.spark import describe_state


def test_defaults_match_the_chart_names() -> None:
    config = DagConfig.from_env({})
    assert config.namespace == "userstream"
    assert config.service_account == "userstream-ingest"
    assert config.settings_configmap == "userstream-settings"
    assert config.kafka_username == "userstream-ingest"
    assert config.kafka_ca_file == "/etc/userstream/kafka-ca/ca.crt"
    assert config.postgres_secret == "userstream-staging-app"
    assert config.spark_application == "userstream-stream"
    assert config.in_cluster is None


def test_environment_overrides_with_types() -> None:
    config = DagConfig.from_env(
        {
            "USERSTREAM_DAG_IN_CLUSTER": "false",
            "USERSTREAM_DAG_FRESHNESS_MAX_AGE_MINUTES": "5",
            "USERSTREAM_DAG_INGEST_IMAGE": "userstream-ingest:dev",
            "USERSTREAM_DAG_NAMESPACE": "  ",  # blank keeps the default
        }
    )
    assert config.in_cluster is False
    assert config.freshness_max_age_minutes == 5
    assert config.ingest_image == "userstream-ingest:dev"
    assert config.namespace == "userstream"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("USERSTREAM_DAG_FRESHNESS_MAX_AGE_MINUTES", "soon", "expected an integer"),
        ("USERSTREAM_DAG_INGEST_DEADLINE_SECONDS", "0", "at least 1"),
        ("USERSTREAM_DAG_IN_CLUSTER", "maybe", "true, false or auto"),
        ("USERSTREAM_DAG_NAMESPCE", "x", "unknown variable"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(DagConfigError, match=message) as info:
        DagConfig.from_env({name: value})
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


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        ("RUNNING", True),
        ("FAILED", False),
        ("SUBMISSION_FAILED", False),
        # transitions: the operator resubmits (restartPolicy Always); a waiter keeps waiting
        ("FAILING", None),
        ("INVALIDATING", None),
        ("PENDING_RERUN", None),
        ("SUBMITTED", None),
        ("SUCCEEDING", None),
        ("COMPLETED", None),
        ("UNKNOWN", None),
        (None, None),
    ],
)
def test_only_final_failures_stop_a_wait_for_the_stream(state: str | None, verdict: bool | None) -> None:
    from userstream_dags.spark import wait_verdict

    assert wait_verdict(_app(state)) is verdict


def test_names_derive_from_the_chart_release() -> None:
    """The chart names its objects after userstream.fullname: the release when it contains
    "userstream", else <release>-userstream."""
    other = DagConfig.from_env({"USERSTREAM_DAG_RELEASE": "etl"})
    assert other.service_account == "etl-userstream-ingest"
    assert other.settings_configmap == "etl-userstream-settings"
    assert other.kafka_user_secret == "etl-userstream-ingest"
    assert other.kafka_ca_secret == "etl-userstream-kafka-cluster-ca-cert"
    assert other.postgres_secret == "etl-userstream-staging-app"
    assert other.cassandra_secret == "etl-userstream-cassandra-reader"
    assert other.spark_application == "etl-userstream-stream"
    assert DagConfig.from_env({"USERSTREAM_DAG_RELEASE": "userstream-b"}).spark_application == (
        "userstream-b-stream"
    )
    explicit = DagConfig.from_env({"USERSTREAM_DAG_RELEASE": "etl", "USERSTREAM_DAG_POSTGRES_SECRET": "pg"})
    assert explicit.postgres_secret == "pg"


def test_without_kafka_tls_no_ca_is_mounted_or_configured() -> None:
    from userstream_dags import pods

    config = DagConfig.from_env({"USERSTREAM_DAG_KAFKA_TLS": "false"})
    assert config.kafka_tls is False
    assert [v.name for v in pods.ingest_volumes(config)] == ["tmp"]
    assert [m.name for m in pods.ingest_mounts(config)] == ["tmp"]
    assert "USERSTREAM_KAFKA_SSL_CAFILE" not in {e.name for e in pods.ingest_env(config)}
    default = DagConfig.from_env({})
    assert [v.name for v in pods.ingest_volumes(default)] == ["kafka-ca", "tmp"]
