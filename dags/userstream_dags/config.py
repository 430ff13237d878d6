"""The names of the userstream chart's objects the DAGs use, from the one settings object.

The DAGs read :class:`userstream.settings.Settings` like every other component: its ``dag_*``
fields, set on the Airflow components as ``USERSTREAM_DAG_*`` variables (for example
``USERSTREAM_DAG_INGEST_IMAGE=registry/userstream-ingest:1.2``, with the Airflow chart's ``env``
values; docs/configuration.md lists them). The pipeline's own settings reach the pods through the
chart's settings ConfigMap and Secrets, never through Airflow. Loading the settings reads only
``os.environ``, so parsing a DAG file does no I/O, and a wrong variable fails the parse naming it.

This module adds what only the chart decides: the names of its objects, which derive from
``USERSTREAM_DAG_RELEASE`` exactly as the chart derives them (``userstream.fullname`` in
charts/userstream/templates/_helpers.tpl; tests/chart renders the chart under several release
names and compares), unless a ``USERSTREAM_DAG_*`` variable names one. With the chart in
external mode (docs/charts.md "External Kafka, Cassandra and PostgreSQL") the chart's NOTES print
the variables that name the platform's Secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from userstream.settings import Settings

CHART_NAME = "userstream"


def chart_fullname(release: str) -> str:
    """The prefix of every object of the userstream chart installed as ``release``: the release name
    when it contains the chart name, else ``<release>-userstream``; at most 40 characters."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:40].rstrip("-")


@dataclass(frozen=True)
class ChartObjects:
    """The chart's objects the DAGs' pods use."""

    service_account: str
    settings_configmap: str
    # Strimzi: a KafkaUser, whose name is the user name and its Secret's name
    kafka_user_secret: str
    kafka_ca_secret: str
    postgres_secret: str
    kafka_health_secret: str
    spark_application: str


def chart_objects(settings: Settings) -> ChartObjects:
    """The object names ``settings`` sets, the chart's names for ``settings.dag_release`` otherwise."""
    prefix = chart_fullname(settings.dag_release)
    return ChartObjects(
        service_account=settings.dag_service_account or f"{prefix}-ingest",
        settings_configmap=settings.dag_settings_configmap or f"{prefix}-settings",
        kafka_user_secret=settings.dag_kafka_user_secret or f"{prefix}-ingest",
        kafka_ca_secret=settings.dag_kafka_ca_secret or f"{prefix}-kafka-cluster-ca-cert",
        postgres_secret=settings.dag_postgres_secret or f"{prefix}-staging-app",
        kafka_health_secret=settings.dag_kafka_health_secret or f"{prefix}-health",
        spark_application=settings.dag_spark_application or f"{prefix}-stream",
    )
