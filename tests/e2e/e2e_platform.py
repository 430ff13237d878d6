"""What the pipeline journey (test_pipeline.py) needs of a platform, whichever cluster provider runs it.

Two implementations: :class:`local_platform.LocalPlatform` (the project's own cluster; the local
stack's Kafka and Cassandra through the chart's external mode; Airflow from PyPI running
``airflow dags test``) and :class:`kind_platform.KindPlatform` (kind; Strimzi, K8ssandra and the
official Airflow chart, driven through its REST API). The test bodies see only this interface, so
the same assertions run against both.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

SPARK_APP = "userstream-stream"  # charts/userstream: the SparkApplication of the release `userstream`


class Platform(Protocol):
    """The cluster, the data plane, the chart and Airflow of one e2e session."""

    # the cluster provider (kind_support.Cluster or local_cluster_support.LocalClusterProvider):
    # kubectl, kubectl_json, helm, path
    cluster: Any

    def start(self) -> None:
        """What runs beside the cluster and must exist before the chart is installed (the local
        provider's data plane); nothing for a provider whose data plane runs in the cluster."""

    def install(self) -> None:
        """Images, operators, the userstream chart and Airflow, ready to run DAGs."""

    def teardown(self) -> None:
        """Undo :meth:`start` and :meth:`install` (called even when they failed half-way)."""

    def run_dag(self, records: int, seed: int) -> str:
        """One successful ``users_ingest`` run of ``records`` synthetic users of ``seed``; returns the
        run's log, the ingestion pod's output included. Raises E2EError (with what was seen) when the
        run fails."""

    def stored_ids(self) -> list[uuid.UUID]:
        """Every id in the users table, read as the chart's least-privilege reader role."""

    def dead_letters(self) -> list[tuple[str, str]]:
        """(key, reason header) of every record on the dead-letter topic."""
