"""
### users_stream_health

Every 15 minutes, check that the streaming half of the pipeline is alive:

1. `spark_application_running`: the SparkApplication `userstream-stream` is `RUNNING`
   (`.status.applicationState.state`, read with the Kubernetes API from inside the cluster).
   Any other state fails at once with the operator's error message.
2. `stream_keeps_up`: a pod with the ingestion image compares the topic's end offsets with the
   offsets the stream committed to its progress group (`python -m userstream.stream.health_check`)
   and fails when a record published more than `USERSTREAM_HEALTH_MAX_WAIT_MINUTES` ago (the
   settings ConfigMap; default 30) is still unprocessed. An idle stream (nothing to read) is
   healthy however old its last batch.

The Airflow worker's ServiceAccount needs `get` on `sparkapplications` in the `userstream`
namespace (the `userstream` chart grants it).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import dag, task

from userstream.settings import load_settings
from userstream_dags import pods
from userstream_dags.config import chart_objects
from userstream_dags.spark import SPARK_GROUP, SPARK_PLURAL, SPARK_VERSION, describe_state

SETTINGS = load_settings()


@dag(
    dag_id="users_stream_health",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # A health check that waits for someone to unpause it never runs: Airflow pauses new DAGs by
    # default ([core] dags_are_paused_at_creation), this one starts active.
    is_paused_upon_creation=False,
    max_active_runs=1,
    tags=["userstream", "streaming", "health"],
    default_args={
        "owner": "userstream",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
    },
    dagrun_timeout=timedelta(minutes=10),
    doc_md=__doc__,
)
def users_stream_health() -> None:
    @task(task_id="spark_application_running")
    def spark_application_running() -> str:
        from airflow.sdk.exceptions import AirflowFailException
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        if SETTINGS.dag_in_cluster is False:
            config.load_kube_config()
        elif SETTINGS.dag_in_cluster:
            config.load_incluster_config()
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
        api = client.CustomObjectsApi()
        name, namespace = chart_objects(SETTINGS).spark_application, SETTINGS.dag_namespace
        try:
            app = api.get_namespaced_custom_object(SPARK_GROUP, SPARK_VERSION, namespace, SPARK_PLURAL, name)
        except ApiException as exc:
            raise AirflowFailException(
                f"cannot read SparkApplication {namespace}/{name}: HTTP {exc.status} {exc.reason}. "
                "Is the userstream chart installed, and may the Airflow worker get sparkapplications?"
            ) from None
        running, message = describe_state(app)
        if not running:
            raise AirflowFailException(message)
        return message

    stream_keeps_up = KubernetesPodOperator(
        task_id="stream_keeps_up",
        name="userstream-health",
        cmds=["python", "-m", "userstream.stream.health_check"],
        env_vars=pods.health_env(SETTINGS),
        volumes=pods.ingest_volumes(SETTINGS),
        volume_mounts=pods.ingest_mounts(SETTINGS),
        container_resources=pods.check_resources(),
        active_deadline_seconds=300,
        **pods.common_operator_kwargs(SETTINGS, component="userstream-health"),
    )

    spark_application_running() >> stream_keeps_up


users_stream_health()
