"""DAG integrity: the DAG folder imports cleanly and each DAG follows the project's conventions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from airflow_dagbag import DAGS_DIR, load_dagbag

EXPECTED_DAGS = {"users_ingest", "users_stream_health"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_dagbag(tmp_path_factory.mktemp("airflow-home"))


def test_dag_folder_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


def test_helper_package_is_not_parsed_as_dags(dagbag: Any) -> None:
    parsed = {Path(stat.file).parts[0] if Path(stat.file).parts else "" for stat in dagbag.dagbag_stats}
    assert "userstream_dags" not in parsed
    assert all("userstream_dags" not in stat.file for stat in dagbag.dagbag_stats)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_conventions(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.catchup is False
    assert "userstream" in dag.tags
    assert dag.doc_md, "the module docstring is the DAG's doc"
    assert dag_id in dag.doc_md
    assert dag.max_active_runs == 1
    assert dag.default_args.get("retries", 0) >= 1
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
        assert task.owner == "userstream"


def test_users_ingest_params(dagbag: Any) -> None:
    dag = dagbag.dags["users_ingest"]
    params = dag.params
    assert params["source"] == "synthetic"
    assert params["records"] >= 1
    source = params.get_param("source")
    assert source.schema["enum"] == ["synthetic", "randomuser"]
    records = params.get_param("records")
    assert records.schema["type"] == "integer"
    assert records.schema["minimum"] == 1
    assert dag.schedule is None, "ingestion runs on demand"


def test_users_ingest_launches_one_pod(dagbag: Any) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    dag = dagbag.dags["users_ingest"]
    assert [task.task_id for task in dag.tasks] == ["ingest_users"]
    task = dag.get_task("ingest_users")
    assert isinstance(task, KubernetesPodOperator)
    assert task.arguments == [
        "ingest",
        "--source",
        "{{ params.source }}",
        "--records",
        "{{ params.records }}",
        "--seed",
        "{{ params.get('seed') if params.get('seed') is not none else run_id }}",
    ]
    assert task.get_logs is True
    assert task.on_finish_action.value == "delete_succeeded_pod"


def test_users_stream_health_checks_the_app_then_the_lag(dagbag: Any) -> None:
    dag = dagbag.dags["users_stream_health"]
    running = dag.get_task("spark_application_running")
    lag = dag.get_task("stream_keeps_up")
    assert lag.upstream_task_ids == {running.task_id}
    assert lag.cmds == ["python", "-m", "userstream.stream.health_check"]
    assert dag.schedule == "*/15 * * * *"


def test_health_check_is_active_from_creation(dagbag: Any) -> None:
    """Airflow pauses new DAGs by default; a paused scheduled health check never runs."""
    assert dagbag.dags["users_stream_health"].is_paused_upon_creation is False


def test_dag_files_hold_no_hosts_or_credentials() -> None:
    forbidden = re.compile(
        r"svc\.cluster\.local|://[^\s\"']+@|password\s*=\s*[\"']|\b\d{1,3}(\.\d{1,3}){3}\b"
    )
    for path in DAGS_DIR.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not forbidden.search(text), f"{path} holds a host name or a credential"
