"""One typed settings object for every userstream component.

Every value is read from the environment with the prefix ``USERSTREAM_`` (for example
``USERSTREAM_KAFKA_BOOTSTRAP_SERVERS``). The ingestion pod, the Spark app, the DAGs and the
local runner all build their configuration from :func:`load_settings`; nothing else reads the
environment for configuration.

The defaults describe the embedded local stack (``userstream local up``) on this machine, so a
newcomer needs no configuration at all. In a cluster the chart's ConfigMap and Secrets set them.
The ``dag_*`` settings (``USERSTREAM_DAG_*``) are the Airflow components' share: where the DAGs
find the chart's objects. Every setting has a valid default, so the Airflow components, which set
only those, load the same object (a DAG file parses without the pods' settings), and the pods,
which never see them, load it too.

A wrong or missing value fails at start-up with :class:`SettingsError`, whose message names the
environment variable to fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from userstream import __version__

ENV_PREFIX = "USERSTREAM_"

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Cassandra consistency levels (CQL protocol v5 names; SERIAL levels apply to lightweight transactions only)
WriteConsistency = Literal[
    "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"
]
ReadConsistency = Literal["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "LOCAL_ONE"]
_CQL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _default_state_dir() -> Path:
    return Path.cwd() / ".local-stack"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Configuration shared by every component. See docs/configuration.md for the full table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        description="Comma-separated host:port list of Kafka brokers.",
    )
    kafka_topic: str = Field("users_created", description="Topic the ingestion publishes users to.")
    kafka_dlq_topic: str = Field(
        "users_created.dlq", description="Dead-letter topic for records the stream rejects."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="Kafka security protocol (local stack: SASL_PLAINTEXT with SCRAM; Strimzi: SASL_SSL).",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = Field(
        None, description="SASL mechanism; set with USERSTREAM_KAFKA_USERNAME and USERSTREAM_KAFKA_PASSWORD."
    )
    kafka_username: str | None = Field(
        None, description="Kafka user (a SCRAM principal); on the local stack filled in per client."
    )
    kafka_password: SecretStr | None = Field(
        None, description="Kafka user's password (from a Secret in a cluster)."
    )
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for TLS listeners (Strimzi).")

    # --- Cassandra ---------------------------------------------------------------------------
    cassandra_contact_points: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Comma-separated Cassandra contact points (host names or addresses).",
    )
    cassandra_port: int = Field(9042, ge=1, le=65535, description="CQL port of the contact points.")
    cassandra_local_dc: str = Field("datacenter1", description="Local data center for load balancing.")
    cassandra_keyspace: str = Field("spark_streams", description="Keyspace of the users table.")
    cassandra_table: str = Field("created_users", description="Table the stream upserts users into.")
    cassandra_replication: str = Field(
        "SimpleStrategy:1",
        description="'SimpleStrategy:<rf>' or 'NetworkTopologyStrategy:<dc>=<rf>[,<dc>=<rf>...]'.",
    )
    cassandra_username: str | None = Field(
        None, description="Cassandra login role; on the local stack filled in per client."
    )
    cassandra_password: SecretStr | None = Field(
        None, description="Password of USERSTREAM_CASSANDRA_USERNAME (from a Secret in a cluster)."
    )
    cassandra_write_concurrency: int = Field(
        128,
        ge=1,
        le=1024,
        description="Most Cassandra writes in flight per Spark task (asynchronous requests of the "
        "stream's Java writer).",
    )
    cassandra_write_consistency: WriteConsistency = Field(
        "LOCAL_QUORUM",
        description="Consistency level of the stream's upserts (a majority of the local data "
        "center's replicas acknowledges each row).",
    )
    cassandra_read_consistency: ReadConsistency = Field(
        "LOCAL_QUORUM",
        description="Consistency level of the read-backs that reconcile what was stored (run "
        "summary, checks, tests, benchmark); with the write level it must overlap the replicas "
        "written, which LOCAL_QUORUM on both does.",
    )
    cassandra_retry_deadline_seconds: float = Field(
        600.0,
        ge=1,
        description="How long the stream's writer keeps retrying (capped exponential backoff) while "
        "Cassandra is unreachable or failing writes transiently, e.g. during a restart; past it the "
        "micro-batch fails and the process exits non-zero (it resumes from its checkpoint).",
    )

    # --- PostgreSQL staging ------------------------------------------------------------------
    postgres_dsn: SecretStr = Field(
        SecretStr("postgresql://userstream@127.0.0.1:5432/userstream"),
        description="libpq connection string of the staging database.",
    )

    # --- Ingestion ---------------------------------------------------------------------------
    source: Literal["synthetic", "randomuser"] = Field(
        "synthetic", description="Where users come from: the offline generator or the randomuser.me API."
    )
    randomuser_url: str = Field("https://randomuser.me/api/", description="The randomuser.me API endpoint.")
    randomuser_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of one API request (seconds).")
    randomuser_max_retries: int = Field(
        5, ge=0, description="Retries of a failed API request (429, 5xx, timeouts)."
    )
    randomuser_requests_per_second: float = Field(1.0, gt=0, description="Rate limit of API requests.")
    randomuser_nationalities: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated two-letter nationality codes to ask the API for (default: all).",
    )
    randomuser_seed: str | None = Field(
        None, description="API seed: the same seed and page give the same users (random per run if unset)."
    )
    randomuser_backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles per attempt.")
    synthetic_seed: int = Field(
        42,
        description="Seed of the synthetic source: same seed, same users (`userstream ingest --seed`).",
    )
    synthetic_broken_rate: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of deliberately broken synthetic records (they must be dead-lettered).",
    )
    ingest_records: int = Field(10_000, ge=1, description="Users one ingestion run fetches.")
    ingest_batch_size: int = Field(
        1_000,
        ge=1,
        le=5_000,
        description="Users per API request and staging transaction (the API serves at most 5000).",
    )
    staging_schema: str = Field("userstream", description="PostgreSQL schema of the staging table.")
    kafka_topic_partitions: int = Field(3, ge=1, description="Partitions of topics the ingestion creates.")
    kafka_topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of topics the ingestion creates."
    )
    kafka_linger_ms: int = Field(20, ge=0, description="Producer batching delay.")
    kafka_compression_type: Literal["gzip", "snappy", "lz4", "zstd", "none"] = Field(
        "gzip", description="Producer compression."
    )
    ingest_publish_max_attempts: int = Field(
        3,
        ge=1,
        le=1000,
        description="Failed deliveries of one staged row, with an error Kafka does not retry (too large, "
        "invalid), after which the outbox parks it: kept in staging with its error, reported, not sent "
        "again (retriable errors such as timeouts never park a row).",
    )

    # --- Streaming app -----------------------------------------------------------------------
    checkpoint_location: str = Field(
        default_factory=lambda: str(_default_state_dir() / "checkpoints" / "users_stream"),
        description="Durable checkpoint directory (a path or a Hadoop URI) of the streaming query.",
    )
    stream_starting_offsets: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a stream without a checkpoint starts reading the topic."
    )
    stream_trigger_interval: str = Field("2 seconds", description="Micro-batch trigger interval.")
    stream_max_offsets_per_trigger: int | None = Field(
        None, ge=1, description="Most records one micro-batch takes (default: all available)."
    )
    stream_max_record_bytes: int = Field(
        64 * 1024, ge=1024, description="Records larger than this are dead-lettered (reason too_large)."
    )
    spark_master: str = Field("local[2]", description="Spark master for local runs.")
    dlq_max_value_bytes: int = Field(
        64 * 1024,
        ge=0,
        le=512 * 1024,
        description="Bytes of the original value a dead letter keeps (the rest is described by the "
        "headers dlq.value.bytes and dlq.value.sha256); well under Kafka's 1 MiB message limit.",
    )

    stream_progress_group: str = Field(
        "userstream-stream-progress",
        description="Consumer group the stream commits each completed micro-batch's end offsets to "
        "(for the health check only: the stream resumes from its checkpoint).",
    )

    # --- Health check (users_stream_health) ----------------------------------------------------
    health_max_wait_minutes: int = Field(
        30,
        ge=1,
        description="The health check fails when a record published longer ago than this is still "
        "unprocessed; an idle stream with nothing to read is healthy however old its last batch.",
    )
    health_max_lag: int = Field(
        0, ge=0, description="Unprocessed records the health check counts as caught up (0: none)."
    )

    # --- Local stack -------------------------------------------------------------------------
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Data, logs, pid files and credentials of the local stack (default ./.local-stack).",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path.cwd() / ".cache",
        description="Downloaded and built artifacts: jars, binaries, images, CRDs (default ./.cache).",
    )
    cluster_dir: Path = Field(
        default_factory=lambda: Path.cwd() / ".local-cluster",
        description="State folder of the project's own Kubernetes cluster (`userstream cluster up`): "
        "certificates, kubeconfig, logs, node data.",
    )
    local_kafka_controller_port: int = Field(
        9093, ge=1, le=65535, description="KRaft controller port of the local Kafka."
    )
    local_cassandra_storage_port: int = Field(
        7000, ge=1, le=65535, description="Inter-node (storage) port of the local Cassandra."
    )
    local_external_address: str | None = Field(
        None,
        description="An address of this machine (e.g. 10.234.0.1, the host end of the local cluster's "
        "veth) where the local Kafka listens too (SASL, advertised there) and Cassandra serves CQL, "
        "so pods of a Kubernetes cluster on this machine can reach them; unset: loopback only.",
    )
    local_kafka_external_port: int = Field(
        9094, ge=1, le=65535, description="Kafka's SASL listener on local_external_address."
    )
    spark_jars_dir: Path | None = Field(
        None,
        description="Folder of the Spark Kafka connector jars; default <cache_dir>/jars/spark-kafka "
        "(set it in an image that bakes the jars in).",
    )

    # --- Airflow DAGs (dags/userstream_dags) -------------------------------------------------
    # Read by the Airflow components. The defaults are what charts/userstream deploys: its values
    # (image, uid, Secret keys) are the source, and tests/chart (test_dag_defaults_are_the_charts)
    # holds these to them, as Helm cannot read Python. Unset object names are the chart's names for
    # USERSTREAM_DAG_RELEASE (dags/userstream_dags/config.py).
    dag_namespace: str = Field(
        "userstream", min_length=1, description="Namespace of the userstream chart: where the DAGs run pods."
    )
    dag_release: str = Field(
        "userstream",
        min_length=1,
        description="Release name of charts/userstream; the unset object names below are the chart's for it "
        "(<fullname>: the release if it contains 'userstream', else <release>-userstream).",
    )
    dag_ingest_image: str = Field(
        f"userstream-ingest:{__version__}",
        min_length=1,
        description="Image of the DAGs' pods (the chart's image.ingest).",
    )
    dag_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of the DAGs' pods."
    )
    dag_service_account: str | None = Field(
        None, description="ServiceAccount of the DAGs' pods (default <fullname>-ingest)."
    )
    dag_in_cluster: bool | None = Field(
        None,
        description="true: the Kubernetes API of the cluster Airflow runs in; false: a kubeconfig; "
        "unset or auto: the provider decides.",
    )
    dag_kubernetes_conn_id: str = Field(
        "kubernetes_default", description="Airflow connection of the KubernetesPodOperator."
    )
    dag_settings_configmap: str | None = Field(
        None, description="ConfigMap of the pods' USERSTREAM_* settings (default <fullname>-settings)."
    )
    dag_kafka_user_secret: str | None = Field(
        None,
        description="Secret of the ingestion's Kafka user (default <fullname>-ingest, the Strimzi KafkaUser, "
        "whose name is the user name; external mode: kafka.external.users.ingest.secretName).",
    )
    dag_kafka_username_key: str | None = Field(
        None, description="Key of the Kafka user name in that Secret (unset: the Secret's name is the user)."
    )
    dag_kafka_password_key: str = Field("password", description="Key of the Kafka password in that Secret.")
    dag_kafka_tls: bool = Field(
        True,
        description="Mount the Kafka CA (the chart's kafka.listener.tls); false for SASL_PLAINTEXT, or "
        "SASL_SSL without a CA Secret.",
    )
    dag_kafka_ca_secret: str | None = Field(
        None, description="Secret of the Kafka CA (default <fullname>-kafka-cluster-ca-cert, Strimzi's)."
    )
    dag_kafka_ca_key: str = Field("ca.crt", description="Key of the CA certificate in that Secret.")
    dag_postgres_secret: str | None = Field(
        None,
        description="Secret of the staging database's DSN (default <fullname>-staging-app, CloudNativePG's).",
    )
    dag_postgres_dsn_key: str = Field("uri", description="Key of the DSN in that Secret.")
    dag_kafka_health_secret: str | None = Field(
        None,
        description="Secret of the health check's Kafka user (Describe only; default <fullname>-health, "
        "the Strimzi KafkaUser; same keys as the ingestion's).",
    )
    dag_spark_application: str | None = Field(
        None, description="SparkApplication of the stream (default <fullname>-stream)."
    )
    dag_ingest_cpu_request: str = Field("250m", description="CPU request of the ingestion pod.")
    dag_ingest_memory_request: str = Field("256Mi", description="Memory request of the ingestion pod.")
    dag_ingest_cpu_limit: str = Field("1", description="CPU limit of the ingestion pod.")
    dag_ingest_memory_limit: str = Field("768Mi", description="Memory limit of the ingestion pod.")
    dag_ingest_deadline_seconds: int = Field(
        3600, ge=1, description="Kubernetes stops an ingestion pod running longer than this."
    )
    dag_run_as_user: int = Field(
        10001, ge=1, description="uid (and gid) the DAGs' pods run as: the ingest image's user."
    )

    @field_validator(
        "kafka_bootstrap_servers",
        "cassandra_contact_points",
        "randomuser_nationalities",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one host:port")
        for server in value:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("dag_in_cluster", mode="before")
    @classmethod
    def _auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"", "auto", "none"}:
            return None
        return value

    @field_validator("local_external_address")
    @classmethod
    def _check_external_address(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
        return value

    @field_validator("cassandra_contact_points")
    @classmethod
    def _check_contact_points(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one host")
        return value

    @field_validator("kafka_topic", "kafka_dlq_topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not _TOPIC_RE.match(value) or value in {".", ".."}:
            raise ValueError(f"{value!r} is not a valid Kafka topic name")
        return value

    @field_validator("stream_progress_group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        if not _TOPIC_RE.match(value):
            raise ValueError(f"{value!r} must be 1-249 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("cassandra_keyspace", "cassandra_table", "staging_schema")
    @classmethod
    def _check_cql_name(cls, value: str) -> str:
        if not _CQL_NAME_RE.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits and '_' (max 48)")
        return value

    @field_validator("cassandra_write_consistency", "cassandra_read_consistency", mode="before")
    @classmethod
    def _upper_consistency(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("cassandra_replication")
    @classmethod
    def _check_replication(cls, value: str) -> str:
        replication_options(value)
        return value

    @field_validator("postgres_dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith(("postgresql://", "postgres://")) and "=" not in raw:
            raise ValueError("must be a postgresql:// URI or a key=value libpq string")
        return value

    @field_validator("randomuser_nationalities")
    @classmethod
    def _check_nat(cls, value: list[str]) -> list[str]:
        for nat in value:
            if not re.fullmatch(r"[A-Za-z]{2}", nat):
                raise ValueError(f"{nat!r} is not a two-letter nationality code")
        return [nat.upper() for nat in value]

    # --- Derived values ----------------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(self.kafka_bootstrap_servers)

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options for kafka-python clients (empty on the local PLAINTEXT stack)."""
        self.require_kafka_credentials()
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_username
            options["sasl_plain_password"] = (
                self.kafka_password.get_secret_value() if self.kafka_password else None
            )
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return options

    def spark_kafka_options(self) -> dict[str, str]:
        """The same security options in the form Spark's Kafka source and sink expect."""
        self.require_kafka_credentials()
        options = {
            "kafka.bootstrap.servers": self.kafka_bootstrap,
            "kafka.security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.kafka_sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            password = self.kafka_password.get_secret_value() if self.kafka_password else ""
            options["kafka.sasl.mechanism"] = self.kafka_sasl_mechanism
            options["kafka.sasl.jaas.config"] = (
                f'{module} required username="{self.kafka_username}" password="{password}";'
            )
        if self.kafka_ssl_cafile:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = str(self.kafka_ssl_cafile)
        return options

    @property
    def replication(self) -> dict[str, str]:
        return replication_options(self.cassandra_replication)

    def require_kafka_credentials(self) -> None:
        """A Kafka client's start-up check. Not part of loading the settings: a component that never
        talks to Kafka (the Cassandra migration) shares the ConfigMap but gets no Kafka Secret."""
        if self.kafka_sasl_mechanism and not (self.kafka_username and self.kafka_password):
            raise SettingsError(
                f"{ENV_PREFIX}KAFKA_SASL_MECHANISM is set but {ENV_PREFIX}KAFKA_USERNAME or "
                f"{ENV_PREFIX}KAFKA_PASSWORD is missing"
            )

    def _check_pairs(self) -> None:
        if bool(self.cassandra_username) != bool(self.cassandra_password):
            raise SettingsError(
                f"set both {ENV_PREFIX}CASSANDRA_USERNAME and {ENV_PREFIX}CASSANDRA_PASSWORD, or neither"
            )
        if self.kafka_topic == self.kafka_dlq_topic:
            raise SettingsError(
                f"{ENV_PREFIX}KAFKA_DLQ_TOPIC must differ from {ENV_PREFIX}KAFKA_TOPIC "
                f"(both are {self.kafka_topic!r})"
            )


def replication_options(spec: str) -> dict[str, str]:
    """Parse 'SimpleStrategy:1' or 'NetworkTopologyStrategy:dc1=3,dc2=3' into CQL options."""
    strategy, sep, rest = spec.partition(":")
    strategy = strategy.strip()
    if not sep or not rest.strip():
        raise ValueError(f"{spec!r}: expected '<strategy>:<options>'")
    if strategy == "SimpleStrategy":
        if not rest.strip().isdigit() or int(rest) < 1:
            raise ValueError(f"{spec!r}: SimpleStrategy needs a replication factor >= 1")
        return {"class": "SimpleStrategy", "replication_factor": str(int(rest))}
    if strategy == "NetworkTopologyStrategy":
        options = {"class": "NetworkTopologyStrategy"}
        for pair in rest.split(","):
            dc, eq, rf = pair.partition("=")
            if not eq or not dc.strip() or not rf.strip().isdigit() or int(rf) < 1:
                raise ValueError(f"{spec!r}: expected <dc>=<rf> pairs, got {pair!r}")
            options[dc.strip()] = str(int(rf))
        return options
    raise ValueError(f"{spec!r}: strategy must be SimpleStrategy or NetworkTopologyStrategy")


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``load_settings()`` (e.g. in a subprocess) equals ``settings``.

    ``base`` (default: this process's environment) is copied without its ``USERSTREAM_*`` keys.
    """
    source = dict(os.environ) if base is None else base
    env = {key: value for key, value in source.items() if not key.startswith(ENV_PREFIX)}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(item) for item in value)
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


# USERSTREAM_* variables that are not settings, each read by the one place named here
OTHER_VARIABLES = frozenset(
    {
        "USERSTREAM_VERSIONS_FILE",  # userstream.versions: versions.env inside an image
        "USERSTREAM_ACCESS_FILE",  # userstream.access: the principals' definition
        "USERSTREAM_IMAGE_TAG",  # userstream.cluster.images: the tag of the project's images
        "USERSTREAM_CASSANDRA_WRITER_ROLE",  # storage.migration.roles_from_env: the chart's roles
        "USERSTREAM_CASSANDRA_WRITER_PASSWORD",
        "USERSTREAM_CASSANDRA_READER_ROLE",
        "USERSTREAM_CASSANDRA_READER_PASSWORD",
        "USERSTREAM_APISERVER_TIMEOUT",  # tests/cluster: the cluster API tier
        "USERSTREAM_REQUIRE_CRDS",  # tests/chart: CI fails on a missing CRD
        "USERSTREAM_KEEP_STACK",  # tests/integration: keep the local stack after the tests
    }
)


# Kubernetes gives every container variables for each Service of its namespace ("service links",
# Kubernetes docs "Discovering services: Environment variables"): a Service userstream-staging-rw
# yields USERSTREAM_STAGING_RW_SERVICE_HOST=10.96.0.7, ..._SERVICE_PORT=5432,
# ..._PORT=tcp://10.96.0.7:5432, ..._PORT_5432_TCP_ADDR=..., and so on. They are not settings.
_SERVICE_LINK = re.compile(
    r"^USERSTREAM_[A-Z0-9_]+_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT|PORT_\d+_(?:TCP|UDP|SCTP)(?:_(?:ADDR|PORT|PROTO))?)$"
)
_SERVICE_LINK_VALUE = re.compile(
    r"^(?:(?:tcp|udp|sctp)://[0-9a-fA-F.:\[\]]+:\d+|[0-9a-fA-F.:]+|\d+|tcp|udp|sctp)$"
)


def is_service_link(name: str, value: str) -> bool:
    """A variable Kubernetes sets for a Service (by its name and the shape of its value)."""
    if not _SERVICE_LINK.match(name) or not _SERVICE_LINK_VALUE.match(value):
        return False
    # a bare number is a port only under a SERVICE_PORT name: USERSTREAM_CASANDRA_PORT=9042 is a typo
    return not (value.isdigit() and "_SERVICE_PORT" not in name and not re.search(r"_PORT_\d+_", name))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``USERSTREAM_*`` variables that no setting reads, each with the closest setting's name."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in OTHER_VARIABLES:
            continue
        if is_service_link(name, environ[name]):
            continue
        close = difflib.get_close_matches(name, sorted(known | OTHER_VARIABLES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else " (docs/configuration.md lists the settings)"
        problems.append(f"{name} is not a userstream setting{hint}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; fail naming the variable when one is wrong.

    A ``USERSTREAM_*`` variable that no setting reads is an error too: a misspelled setting would
    otherwise be ignored silently.
    """
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError("unknown userstream settings:\n  " + "\n  ".join(unknown))
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise SettingsError("invalid userstream settings:\n  " + "\n  ".join(problems)) from None
    settings._check_pairs()
    return settings


def configuration_markdown() -> str:
    """docs/configuration.md: every setting with its variable, type, default and description."""
    lines = [
        "# Configuration",
        "",
        "Every userstream component reads these `USERSTREAM_*` environment variables (one typed",
        "settings object, `src/userstream/settings.py`). A wrong value, or a `USERSTREAM_*` variable",
        "that is not listed here, stops the program at start-up with a message naming the variable.",
        "",
        "Generated by `python -m userstream.settings > docs/configuration.md`; a unit test keeps it true.",
        "",
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for name, info in Settings.model_fields.items():
        annotation = str(info.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
        annotation = re.sub(r"Annotated\[(.*?), .*\]$", r"\1", annotation).replace("|", "or")
        if name in {"state_dir", "cache_dir", "cluster_dir", "checkpoint_location"}:
            default = "(under the working directory)"
        elif info.default_factory is not None:
            default = f"`{info.get_default(call_default_factory=True)}`"
        elif info.default is None:
            default = "unset"
        else:
            value = info.default.get_secret_value() if isinstance(info.default, SecretStr) else info.default
            default = f"`{value}`"
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {annotation} | {default} | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(configuration_markdown(), end="")
