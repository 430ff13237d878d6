"""The whole pipeline on kind: images built and loaded, operators and Airflow installed by
k8s/platform/install.sh, the userstream chart installed with its kind values, the `users_ingest` DAG
triggered through Airflow's REST API, and the ingested users counted in Cassandra."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kind_support import NAMESPACE, REPO, AirflowClient, Cluster, E2EError, wait_for

from userstream.cluster.images import image_tag
from userstream_dags.spark import wait_verdict

pytestmark = pytest.mark.e2e

IMAGES = ("ingest", "spark", "airflow")
AIRFLOW_NAMESPACE = "airflow"  # k8s/platform/install.sh: Airflow never shares the data plane's namespace
DEPLOY_TIMEOUT = next(
    line.split("=", 1)[1].strip()
    for line in (REPO / "versions.env").read_text(encoding="utf-8").splitlines()
    if line.startswith("DEPLOY_TIMEOUT=")
)
RECORDS = int(os.environ.get("E2E_RECORDS", "500"))
SPARK_APP = "userstream-stream"


@pytest.fixture(scope="session")
def deployed(cluster: Cluster) -> Cluster:
    """Build, load, install; return once Kafka, Cassandra and PostgreSQL report ready."""
    tag = image_tag("ingest")
    cluster.load_images(list(IMAGES))
    cluster.run(
        "env", f"IMAGE_TAG={tag}", "AIRFLOW_LOGS_ACCESS_MODE=ReadWriteOnce",
        f"KUBE_CONTEXT=kind-{cluster.name}", "bash", "k8s/platform/install.sh",
    )  # fmt: skip
    cluster.helm(
        "upgrade", "--install", "userstream", "charts/userstream",
        "--namespace", NAMESPACE, "--create-namespace",
        "-f", "charts/userstream/ci/kind-values.yaml",
        "--set", f"image.ingest.tag={tag}",
        "--set", f"image.spark.tag={tag}",
        "--wait", "--timeout", DEPLOY_TIMEOUT,
    )  # fmt: skip
    cluster.wait_condition("kafka/userstream-kafka", "Ready", 900)
    cluster.wait_condition("clusters.postgresql.cnpg.io/userstream-staging", "Ready", 900)
    cluster.wait_condition("cassandradatacenter/dc1", "Ready", 1200)
    cluster.wait_condition("k8ssandracluster/userstream-cassandra", "CassandraInitialized", 600)
    return cluster


def spark_state(cluster: Cluster) -> tuple[str, str]:
    """The application's state; fails at once on a final failure (FAILED, SUBMISSION_FAILED) only:
    FAILING, INVALIDATING, PENDING_RERUN are transitions the operator recovers from."""
    app = cluster.kubectl_json("get", "sparkapplication", "-n", NAMESPACE, SPARK_APP)
    state = app.get("status", {}).get("applicationState", {})
    if wait_verdict(app) is False:
        raise E2EError(
            f"SparkApplication {SPARK_APP} is {state.get('state')}: {state.get('errorMessage', '')}"
        )
    return str(state.get("state", "")), str(state.get("errorMessage", ""))


def cassandra_rows(cluster: Cluster) -> int:
    pods = cluster.kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", "cassandra.datastax.com/cluster=userstream-cassandra"
    )["items"]
    if not pods:
        raise E2EError("no Cassandra pod of userstream-cassandra")
    # the read-only role (charts/userstream: Secret <release>-cassandra-reader), not the superuser
    user = cluster.secret_value("userstream-cassandra-reader", "username")
    password = cluster.secret_value("userstream-cassandra-reader", "password")
    output = cluster.kubectl(
        "exec", "-n", NAMESPACE, pods[0]["metadata"]["name"], "-c", "cassandra", "--",
        "cqlsh", "-u", user, "-p", password, "-e", "SELECT count(*) FROM spark_streams.created_users;",
    )  # fmt: skip
    numbers = [line.strip() for line in output.splitlines() if line.strip().isdigit()]
    if not numbers:
        raise E2EError(f"unexpected cqlsh output: {output!r}")
    return int(numbers[0])


@pytest.fixture(scope="session")
def airflow(deployed: Cluster) -> Iterator[AirflowClient]:
    deployed.kubectl(
        "rollout", "status", "-n", AIRFLOW_NAMESPACE, "deployment/airflow-api-server", "--timeout=600s"
    )  # fmt: skip
    with deployed.port_forward("svc/airflow-api-server", 8080, namespace=AIRFLOW_NAMESPACE) as port:
        yield wait_for(
            "Airflow's API to issue a token",
            lambda: AirflowClient(
                f"http://127.0.0.1:{port}",
                os.environ.get("E2E_AIRFLOW_USERNAME", "admin"),
                os.environ.get("E2E_AIRFLOW_PASSWORD", "admin"),
            ),
            timeout_s=300,
        )


def test_stream_application_is_running(deployed: Cluster) -> None:
    def running() -> bool | None:
        state, _ = spark_state(deployed)
        return True if state == "RUNNING" else None

    wait_for(f"SparkApplication {SPARK_APP} to be RUNNING", running, timeout_s=900, interval_s=10)
    executors = deployed.kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", f"sparkoperator.k8s.io/app-name={SPARK_APP},spark-role=executor"
    )["items"]
    workers = {pod["spec"].get("nodeName", "") for pod in executors}
    assert executors, "the SparkApplication runs no executor"
    assert not any(node.endswith("control-plane") for node in workers), f"executors on {workers}"


def test_dags_are_loaded(airflow: AirflowClient) -> None:
    def loaded() -> Any:
        return airflow.dag("users_ingest")

    wait_for("Airflow to parse dags/users_ingest.py", loaded, timeout_s=300)
    assert airflow.import_errors() == []
    assert airflow.dag("users_stream_health")["dag_id"] == "users_stream_health"


def test_ingested_users_land_in_cassandra(deployed: Cluster, airflow: AirflowClient) -> None:
    before = cassandra_rows(deployed)
    airflow.unpause("users_ingest")
    run_id = airflow.trigger("users_ingest", {"source": "synthetic", "records": RECORDS})

    def finished() -> str | None:
        state = airflow.run_state("users_ingest", run_id)
        return state if state in {"success", "failed"} else None

    state = wait_for(f"DAG run {run_id} of users_ingest", finished, timeout_s=1200, interval_s=10)
    if state != "success":
        raise E2EError(
            f"users_ingest run {run_id} {state}: tasks {airflow.task_states('users_ingest', run_id)}"
        )

    # synthetic users include ~1% deliberately broken ones, which go to the dead-letter topic
    expected = int(RECORDS * 0.9)

    def landed() -> int | None:
        spark_state(deployed)
        rows = cassandra_rows(deployed)
        # a cluster kept from an earlier run already holds these users (same seed, same ids)
        return rows if rows >= expected else None

    rows = wait_for(
        f">= {expected} users in spark_streams.created_users", landed, timeout_s=900, interval_s=15
    )
    assert rows <= before + RECORDS, "ids are deterministic: never more rows than users ingested"


def test_a_second_run_duplicates_nothing(deployed: Cluster, airflow: AirflowClient) -> None:
    before = cassandra_rows(deployed)
    run_id = airflow.trigger("users_ingest", {"source": "synthetic", "records": RECORDS})
    state = wait_for(
        f"DAG run {run_id}",
        lambda: s if (s := airflow.run_state("users_ingest", run_id)) in {"success", "failed"} else None,
        timeout_s=1200,
        interval_s=10,
    )
    assert state == "success"
    # give the stream time to process the replay, then the count must not have moved
    time.sleep(60)
    assert cassandra_rows(deployed) == before, "the same synthetic users (same seed) were stored twice"
