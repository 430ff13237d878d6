"""
### users_ingest

Launch one **ingestion pod** (`userstream ingest`) through the KubernetesPodOperator. The pod
fetches users from the chosen source, stages the raw JSON in PostgreSQL and publishes it to the
Kafka topic the `userstream-stream` SparkApplication consumes.

Ids are derived from each user's identity, so a retry or a re-run never duplicates a user.

**Params**: `source` (`synthetic` or `randomuser`), `records` (how many users) and `seed` (which
users; default: the run's id, so a retry of a run fetches the same users).

**Configuration**: the `USERSTREAM_DAG_*` settings of the Airflow components
(docs/configuration.md); the pod itself reads the `userstream-settings` ConfigMap and the Kafka
and PostgreSQL Secrets.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Param, dag

from userstream.settings import load_settings
from userstream_dags import pods

SETTINGS = load_settings()


@dag(
    dag_id="users_ingest",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["userstream", "ingestion", "kubernetes"],
    default_args={
        "owner": "userstream",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
    },
    params={
        "source": Param(
            "synthetic",
            type="string",
            enum=["synthetic", "randomuser"],
            description="synthetic (offline generator) or randomuser (the randomuser.me API)",
        ),
        "records": Param(
            1000, type="integer", minimum=1, maximum=1_000_000, description="How many users to ingest"
        ),
        "seed": Param(
            None,
            type=["null", "string", "integer"],
            description="Which users (same seed, same users). Default: the run's id, so a retry of the "
            "run fetches exactly the users its first try fetched and duplicates nothing",
        ),
    },
    doc_md=__doc__,
)
def users_ingest() -> None:
    KubernetesPodOperator(
        task_id="ingest_users",
        name="userstream-ingest",
        arguments=[
            "ingest",
            "--source",
            "{{ params.source }}",
            "--records",
            "{{ params.records }}",
            "--seed",
            "{{ params.get('seed') if params.get('seed') is not none else run_id }}",
        ],
        env_vars=pods.ingest_env(SETTINGS),
        volumes=pods.ingest_volumes(SETTINGS),
        volume_mounts=pods.ingest_mounts(SETTINGS),
        container_resources=pods.ingest_resources(SETTINGS),
        active_deadline_seconds=SETTINGS.dag_ingest_deadline_seconds,
        **pods.common_operator_kwargs(SETTINGS, component="userstream-ingest"),
    )


users_ingest()
