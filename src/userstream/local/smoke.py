"""``userstream local smoke``: one real round trip through every server of the local stack."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from userstream.errors import UserstreamError
from userstream.settings import Settings

SMOKE_KEYSPACE = "userstream_smoke"


class SmokeFailure(UserstreamError):
    """A step of the smoke test got an answer, but not the expected one."""


@contextmanager
def _step(echo: Callable[[str], None], title: str) -> Iterator[dict[str, Any]]:
    began = time.monotonic()
    info: dict[str, Any] = {}
    yield info
    echo(f"  ok  {title}: {info.get('result', 'done')} ({time.monotonic() - began:.1f} s)")


def run_smoke(settings: Settings, *, echo: Callable[[str], None] = print) -> None:
    """Kafka produce/consume, a PostgreSQL row, a Cassandra row and a Spark batch read of Kafka."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    for noisy in ("kafka", "cassandra", "py4j"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    suffix = uuid.uuid4().hex[:10]
    topic = f"userstream_smoke_{suffix}"
    key = f"smoke-{suffix}"
    payload = {"id": key, "note": "userstream local smoke", "at": time.time()}
    value = json.dumps(payload, sort_keys=True)
    kafka_options = settings.kafka_client_options()
    echo(f"smoke test of the local stack (topic {topic})")

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_options)
    try:
        with _step(echo, f"Kafka: created topic {topic}") as info:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
            info["result"] = "1 partition"
        with _step(echo, "Kafka: produced one message (acks=all)") as info:
            producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **kafka_options)
            metadata = producer.send(topic, key=key.encode(), value=value.encode()).get(timeout=30)
            producer.close()
            info["result"] = f"partition {metadata.partition} offset {metadata.offset}"
        with _step(echo, "Kafka: consumed it back") as info:
            consumer = KafkaConsumer(
                topic,
                bootstrap_servers=settings.kafka_bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                consumer_timeout_ms=20_000,
                **kafka_options,
            )
            received = None
            for message in consumer:
                if message.key == key.encode():
                    received = message
                    break
            consumer.close()
            if received is None or received.value.decode() != value:
                raise SmokeFailure(f"the message sent to {topic} did not come back from Kafka")
            info["result"] = f"key {key}"

        _postgres_round_trip(settings, echo, key, value)
        _cassandra_round_trip(settings, echo, key, value)
        _spark_kafka_read(settings, echo, topic, key, value)
    finally:
        try:
            admin.delete_topics([topic])
        except Exception as exc:  # cleanup only: report, never hide the real outcome
            echo(f"  (could not delete topic {topic}: {exc})")
        admin.close()
    echo("smoke test passed: Kafka, PostgreSQL, Cassandra and Spark's Kafka source all answered")


def _postgres_round_trip(settings: Settings, echo: Callable[[str], None], key: str, value: str) -> None:
    import psycopg

    with (
        _step(echo, "PostgreSQL: staged a row and read it back") as info,
        psycopg.connect(
            settings.postgres_dsn.get_secret_value(), autocommit=True, connect_timeout=10
        ) as conn,
    ):
        conn.execute(
            "create table if not exists local_smoke "
            "(id text primary key, payload jsonb not null, staged_at timestamptz not null default now())"
        )
        conn.execute("insert into local_smoke (id, payload) values (%s, %s::jsonb)", (key, value))
        row = conn.execute("select payload from local_smoke where id = %s", (key,)).fetchone()
        conn.execute("delete from local_smoke where id = %s", (key,))
        if row is None or row[0] != json.loads(value):
            raise SmokeFailure("the row staged in PostgreSQL did not read back equal")
        version = conn.execute("show server_version").fetchone()
        info["result"] = f"table local_smoke, server {version[0] if version else '?'}"


def _cassandra_round_trip(settings: Settings, echo: Callable[[str], None], key: str, value: str) -> None:
    from userstream.storage.client import CassandraConfig, connect

    keyspace = SMOKE_KEYSPACE
    cluster, session = connect(CassandraConfig.from_settings(settings))
    try:
        with _step(echo, "Cassandra: wrote a row and read it back") as info:
            replication = ", ".join(f"'{k}': '{v}'" for k, v in settings.replication.items())
            session.execute(
                f"create keyspace if not exists {keyspace} with replication = {{{replication}}}", timeout=30
            )
            session.execute(
                f"create table if not exists {keyspace}.round_trip (id text primary key, payload text)",
                timeout=30,
            )
            # the keyspace name is a constant of this module; the values are bound parameters
            table = f"{keyspace}.round_trip"
            session.execute(f"insert into {table} (id, payload) values (%s, %s)", (key, value))  # noqa: S608
            row = session.execute(f"select payload from {table} where id = %s", (key,)).one()  # noqa: S608
            session.execute(f"delete from {table} where id = %s", (key,))  # noqa: S608
            if row is None or row.payload != value:
                raise SmokeFailure("the row written to Cassandra did not read back equal")
            release = session.execute("select release_version from system.local").one()
            info["result"] = f"{keyspace}.round_trip, Cassandra {release.release_version if release else '?'}"
    finally:
        cluster.shutdown()


def _spark_kafka_read(
    settings: Settings, echo: Callable[[str], None], topic: str, key: str, value: str
) -> None:
    from userstream.stream.spark_session import build_spark_session

    with _step(echo, "Spark: batch read of the topic through the Kafka source") as info:
        spark = build_spark_session(settings, "userstream-local-smoke")
        try:
            rows = (
                spark.read.format("kafka")
                .options(**settings.spark_kafka_options())
                .option("subscribe", topic)
                .option("startingOffsets", "earliest")
                .option("endingOffsets", "latest")
                .load()
                .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "offset")
                .collect()
            )
            matching = [r for r in rows if r["key"] == key and r["value"] == value]
            if not matching:
                raise SmokeFailure(f"Spark read {len(rows)} record(s) from {topic}, not the one produced")
            info["result"] = f"{len(rows)} record(s), Spark {spark.version}"
        finally:
            spark.stop()
