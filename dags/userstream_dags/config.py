"""Deployment configuration shared by the userstream DAGs.

The DAGs only need to know *where* things are in the cluster (namespace, image, ServiceAccount,
ConfigMap and Secret names); the pipeline's own settings reach the pods through the
``userstream-settings`` ConfigMap and the Secrets, never through Airflow.

Every field can be overridden with an environment variable of the Airflow components named
``USERSTREAM_DAG_<FIELD>`` (for example ``USERSTREAM_DAG_INGEST_IMAGE=registry/userstream-ingest:1.2``),
set with the Airflow chart's ``env`` values. The object names derive from ``USERSTREAM_DAG_RELEASE``,
the release name of the ``userstream`` chart, exactly as the chart derives them
(``userstream.fullname`` in charts/userstream/templates/_helpers.tpl); each can still be set on its
own. ``USERSTREAM_DAG_KAFKA_TLS=false`` matches the chart's ``kafka.listener.tls: false`` (no CA to
mount). Only ``os.environ`` is read, so parsing a DAG file does no I/O.

With the chart in external mode (``kafka.enabled``/``cassandra.enabled``/``postgres.enabled``
false, docs/charts.md "External Kafka, Cassandra and PostgreSQL") the pods take their credentials
from the Secrets named in the chart's values, which these variables name for the DAGs (the chart's
NOTES print them)::

    USERSTREAM_DAG_KAFKA_USER_SECRET       kafka.external.users.ingest.secretName
    USERSTREAM_DAG_KAFKA_USERNAME_KEY      its usernameKey (set: the user name is read from the Secret)
    USERSTREAM_DAG_KAFKA_PASSWORD_KEY      its passwordKey
    USERSTREAM_DAG_KAFKA_TLS=false         SASL_PLAINTEXT, or SASL_SSL without a CA Secret
    USERSTREAM_DAG_KAFKA_CA_SECRET, _KEY   kafka.external.caSecret.name, .key (SASL_SSL)
    USERSTREAM_DAG_POSTGRES_SECRET         postgres.external.dsnSecret.name
    USERSTREAM_DAG_POSTGRES_DSN_KEY        postgres.external.dsnSecret.key
    USERSTREAM_DAG_CASSANDRA_SECRET        cassandra.external.readerSecret.name
    USERSTREAM_DAG_CASSANDRA_USERNAME_KEY  its usernameKey
    USERSTREAM_DAG_CASSANDRA_PASSWORD_KEY  its passwordKey
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from userstream import __version__

ENV_PREFIX = "USERSTREAM_DAG_"


class DagConfigError(ValueError):
    """A ``USERSTREAM_DAG_*`` variable has a value the DAGs cannot use."""


CHART_NAME = "userstream"


def chart_fullname(release: str) -> str:
    """The prefix of every object of the userstream chart installed as ``release``: the release name
    when it contains the chart name, else ``<release>-userstream``; at most 40 characters."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:40].rstrip("-")


@dataclass(frozen=True)
class DagConfig:
    """Where the DAGs find the userstream objects in the cluster.

    Name fields left empty derive from ``release`` (see :func:`chart_fullname`).
    """

    namespace: str = "userstream"
    # Release name of charts/userstream: the names below derive from it
    release: str = "userstream"
    ingest_image: str = f"userstream-ingest:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    service_account: str = ""
    # None: the provider decides (in-cluster config when Airflow runs in the cluster, else kubeconfig)
    in_cluster: bool | None = None
    kubernetes_conn_id: str = "kubernetes_default"

    # Non-secret USERSTREAM_* settings, loaded with envFrom
    settings_configmap: str = ""
    # The ingestion's Kafka user. Strimzi (the default): a KafkaUser, whose name is the user name and
    # its Secret's name. External Kafka: a Secret of the platform's; kafka_username_key names the key
    # holding the user name (empty: the Secret's name is the user name, as with Strimzi).
    kafka_user_secret: str = ""
    kafka_username_key: str = ""
    kafka_password_key: str = "password"  # noqa: S105 - a Secret's name, not its value
    # The chart's kafka.listener.tls: with TLS the Strimzi cluster CA is mounted as a file
    kafka_tls: bool = True
    kafka_ca_secret: str = ""
    kafka_ca_key: str = "ca.crt"
    # where the chart's settings ConfigMap says the CA is (USERSTREAM_KAFKA_SSL_CAFILE; a chart test
    # keeps them equal)
    kafka_ca_dir: str = "/etc/userstream/kafka-ca"
    # CloudNativePG application Secret of the staging database
    postgres_secret: str = ""
    postgres_dsn_key: str = "uri"
    # The read-only Cassandra role's Secret (charts/userstream creates it, or names it in external
    # mode: cassandra.external.readerSecret; the freshness check reads Cassandra with SELECT on the
    # table only, never as the superuser)
    cassandra_secret: str = ""
    cassandra_username_key: str = "username"
    cassandra_password_key: str = "password"  # noqa: S105 - a Secret's key, not its value

    # The streaming consumer
    spark_application: str = ""
    # Rows older than this mean the stream is stale
    freshness_max_age_minutes: int = 30

    # Ingestion pod resources
    ingest_cpu_request: str = "250m"
    ingest_memory_request: str = "256Mi"
    ingest_cpu_limit: str = "1"
    ingest_memory_limit: str = "768Mi"
    # A run that takes longer than this is stopped by Kubernetes
    ingest_deadline_seconds: int = 3600

    # The uid the userstream images run as
    run_as_user: int = 10001

    def __post_init__(self) -> None:
        prefix = chart_fullname(self.release)
        derived = {
            "service_account": f"{prefix}-ingest",
            "settings_configmap": f"{prefix}-settings",
            "kafka_user_secret": f"{prefix}-ingest",
            "kafka_ca_secret": f"{prefix}-kafka-cluster-ca-cert",
            "postgres_secret": f"{prefix}-staging-app",
            "cassandra_secret": f"{prefix}-cassandra-reader",
            "spark_application": f"{prefix}-stream",
        }
        for name, value in derived.items():
            if not getattr(self, name):
                object.__setattr__(self, name, value)

    @property
    def kafka_username(self) -> str:
        """The Kafka user name when it is the Secret's name (Strimzi); see :attr:`kafka_username_key`."""
        return self.kafka_user_secret

    @property
    def kafka_ca_file(self) -> str:
        return f"{self.kafka_ca_dir.rstrip('/')}/{self.kafka_ca_key}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DagConfig:
        """Build the configuration from ``USERSTREAM_DAG_*`` variables over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in dataclasses.fields(cls):
            name = ENV_PREFIX + item.name.upper()
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[item.name] = _convert(name, raw.strip(), item.default)
        unknown = sorted(
            key
            for key in env
            if key.startswith(ENV_PREFIX)
            and key.removeprefix(ENV_PREFIX).lower() not in {f.name for f in dataclasses.fields(cls)}
        )
        if unknown:
            raise DagConfigError(
                f"unknown variable(s) {', '.join(unknown)}: "
                f"see dags/userstream_dags/config.py for the {ENV_PREFIX}* names"
            )
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, raw: str, default: object) -> object:
    if isinstance(default, bool) or default is None:
        lowered = raw.lower()
        if lowered in {"true", "1", "yes"}:
            return True
        if lowered in {"false", "0", "no"}:
            return False
        if lowered in {"auto", "none"} and default is None:
            return None
        raise DagConfigError(f"{name}={raw!r}: expected true, false or auto")
    if isinstance(default, int):
        try:
            number = int(raw)
        except ValueError:
            raise DagConfigError(f"{name}={raw!r}: expected an integer") from None
        if number < 1:
            raise DagConfigError(f"{name}={raw!r}: must be at least 1")
        return number
    return raw
