"""The whole pipeline on a cluster, the same tests and assertions on either provider (conftest.py:
E2E_PROVIDER=kind|local). The Spark operator runs the SparkApplication (driver and two executors on
different nodes), Airflow's KubernetesPodOperator runs the ingestion pod, and every user lands
exactly once: stored in Cassandra or dead-lettered with its reason.

The platform under the tests (e2e_platform.Platform):
- kind (kind_platform.KindPlatform): Strimzi, K8ssandra, CloudNativePG and the official Airflow chart
  in the cluster; DAG runs through Airflow's REST API.
- local (local_platform.LocalPlatform): the project's own cluster; the local stack's Kafka and
  Cassandra through the chart's external mode; Airflow from PyPI running `airflow dags test`.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_platform import SPARK_APP, Platform
from kind_support import NAMESPACE, Cluster, E2EError, wait_for
from local_platform import expected_users

pytestmark = pytest.mark.e2e

RECORDS = int(os.environ.get("E2E_RECORDS", "400"))  # users per DAG run


def make_platform(e2e_cluster: Any) -> Platform:
    if isinstance(e2e_cluster, Cluster):
        from kind_platform import KindPlatform

        return KindPlatform(e2e_cluster)
    from local_platform import LocalPlatform, data_plane_settings

    return LocalPlatform(e2e_cluster, data_plane_settings(e2e_cluster.cluster.settings, e2e_cluster.path))


@pytest.fixture(scope="module")
def platform(e2e_cluster: Any) -> Iterator[Platform]:
    platform = make_platform(e2e_cluster)
    platform.start()
    try:
        platform.install()
        yield platform
    finally:
        platform.teardown()


# The application states of spark-operator v2.5.2 (api/v1beta2/sparkapplication_types.go). FAILING,
# INVALIDATING, PENDING_RERUN, SUCCEEDING, SUBMITTED, ... are transitions: with restartPolicy Always
# the operator resubmits after FAILING (pkg/util/sparkapplication.go ShouldRetry). Only these two
# are final: the operator gave up (FAILED after its retries, SUBMISSION_FAILED when it cannot retry).
FINAL_FAILURES = frozenset({"FAILED", "SUBMISSION_FAILED"})


def spark_state(platform: Platform) -> str:
    """The application's state; fails at once on a final failure (FAILED, SUBMISSION_FAILED) with the
    operator's message: FAILING, INVALIDATING, PENDING_RERUN are transitions it recovers from."""
    app = platform.cluster.kubectl_json("get", "sparkapplication", "-n", NAMESPACE, SPARK_APP)
    state = app.get("status", {}).get("applicationState", {})
    if state.get("state") in FINAL_FAILURES:
        raise E2EError(
            f"SparkApplication {SPARK_APP} is {state.get('state')}: {state.get('errorMessage', '')}"
        )
    return str(state.get("state", ""))


def wait_running(platform: Platform, timeout_s: float = 900) -> None:
    wait_for(
        f"SparkApplication {SPARK_APP} RUNNING with two executors",
        lambda: True if spark_state(platform) == "RUNNING" and len(executors(platform)) == 2 else None,
        timeout_s,
        interval_s=3,
    )


def executors(platform: Platform) -> list[dict[str, Any]]:
    pods = platform.cluster.kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", f"sparkoperator.k8s.io/app-name={SPARK_APP},spark-role=executor"
    )["items"]
    return [p for p in pods if p.get("status", {}).get("phase") == "Running"]


def wait_stored(platform: Platform, wanted: set[Any], timeout_s: float = 900) -> list[Any]:
    def landed() -> list[Any] | None:
        spark_state(platform)
        ids = platform.stored_ids()
        return ids if wanted <= set(ids) else None

    return wait_for(f"{len(wanted)} users in Cassandra", landed, timeout_s, interval_s=5)


def test_the_operator_runs_the_stream_with_executors_on_two_nodes(platform: Platform) -> None:
    wait_running(platform)
    nodes = {pod["spec"]["nodeName"] for pod in executors(platform)}
    assert len(nodes) == 2, f"executors share a node: {nodes}"


def test_dag_runs_store_exactly_the_valid_users_and_dead_letter_the_rest(platform: Platform) -> None:
    wait_running(platform)
    before = set(platform.stored_ids())
    letters_before = platform.dead_letters()
    seed = random.randrange(1, 10**9)
    valid, broken = expected_users(seed, RECORDS)

    log = platform.run_dag(RECORDS, seed)
    assert "ingest summary:" in log, "the ingestion pod's log reaches the task log"
    assert "Deleting pod" in log, "the pod is deleted on success"
    stored = wait_stored(platform, valid)
    assert len(stored) == len(set(stored)), "no user stored twice"
    assert set(stored) - before == valid, "exactly the valid users of this run are new"

    def all_dead_lettered() -> list[tuple[str, str]] | None:
        letters = platform.dead_letters()
        return letters if len(letters) - len(letters_before) >= len(broken) else None

    letters = wait_for("the broken users on the dead-letter topic", all_dead_lettered, 300, 5)
    # the topic may have several partitions: what is new is a multiset difference, not a suffix
    new_letters = list((Counter(letters) - Counter(letters_before)).elements())
    assert {key for key, _ in new_letters} == {str(i) for i in broken}
    assert all(reason for _, reason in new_letters), f"a dead letter without its reason: {new_letters}"
    assert len(valid) + len(new_letters) == RECORDS, "in = stored + dead-lettered"

    # another seed adds exactly its users; the same seed again adds nothing
    second_seed = seed + 1
    second_valid, _ = expected_users(second_seed, RECORDS)
    platform.run_dag(RECORDS, second_seed)
    stored = wait_stored(platform, valid | second_valid)
    assert set(stored) - before == valid | second_valid

    replay = platform.run_dag(RECORDS, seed)
    # staged before, published before: the replayed run publishes nothing, so nothing can change
    assert re.search(r"published\s+0 ", replay), "a re-run of the same seed published again"
    again = platform.stored_ids()
    assert Counter(again) == Counter(stored), "a re-run of the same seed changed the table"


def test_a_deleted_driver_is_restarted_and_resumes_without_loss_or_duplicates(platform: Platform) -> None:
    wait_running(platform)
    before = set(platform.stored_ids())
    seed = random.randrange(1, 10**9)
    valid, _ = expected_users(seed, RECORDS)
    driver = f"{SPARK_APP}-driver"
    platform.run_dag(RECORDS, seed)
    platform.cluster.kubectl("delete", "pod", "-n", NAMESPACE, driver, "--wait=false")
    wait_for(
        "the operator to start a new driver",
        lambda: (
            True
            if platform.cluster.kubectl_json("get", "pod", "-n", NAMESPACE, driver)["metadata"].get(
                "deletionTimestamp"
            )
            is None
            else None
        ),
        900,
        3,
    )
    wait_running(platform)
    stored = wait_stored(platform, valid)
    assert len(stored) == len(set(stored)), "the restart duplicated users"
    assert set(stored) - before == valid, "the restart lost or added users"
