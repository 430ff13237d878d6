"""Pure helpers of the DAGs: configuration from the environment, SparkApplication state, freshness."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dags"))

from userstream_dags.config import DagConfig, DagConfigError
from userstream_dags.freshness import judge
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


NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_recent_rows_are_fresh() -> None:
    fresh, message = judge(NOW - timedelta(minutes=2), NOW, timedelta(minutes=30), "ks.t")
    assert fresh
    assert "ks.t is fresh" in message


def test_old_rows_are_stale_and_say_how_old() -> None:
    fresh, message = judge(datetime(2026, 11, 21, 10, 0), NOW, timedelta(minutes=30), "ks.t")
    assert not fresh
    assert "120 min ago (limit 30 min)" in message


def test_empty_table_is_stale() -> None:
    fresh, message = judge(None, NOW, timedelta(minutes=30), "ks.t")
    assert not fresh
    assert "no rows" in message
