"""The local stack's servers answer real requests, and Spark's Kafka source and sink work on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from userstream.local.stack import LocalStack
from userstream.settings import Settings
from userstream.stream.spark_session import connector_jars


def test_every_component_is_healthy_and_measured(local_stack: LocalStack) -> None:
    statuses = {s.name: s for s in local_stack.status()}
    assert set(statuses) == {"postgres", "kafka", "cassandra"}
    for status in statuses.values():
        assert status.healthy, f"{status.name}: {status.state} {status.detail}"
        assert status.pid
        assert status.rss_bytes
        assert status.rss_bytes > 0
    assert statuses["cassandra"].version.startswith("5.0")
    assert statuses["postgres"].version.startswith("18")


def test_up_again_leaves_running_servers_alone(local_stack: LocalStack) -> None:
    before = {s.name: s.pid for s in local_stack.status()}
    again = LocalStack(local_stack.settings, echo=lambda _line: None)
    after = {s.name: s.pid for s in again.up()}
    assert again.started == []
    assert after == before


def test_status_command_exits_zero_when_healthy(stack_settings: Settings) -> None:
    env = {
        **os.environ,
        "USERSTREAM_STATE_DIR": str(stack_settings.state_dir),
        "USERSTREAM_CACHE_DIR": str(stack_settings.cache_dir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "userstream.cli", "local", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "COMPONENT" in result.stdout
    assert result.stdout.count("healthy") == 3


def test_kafka_produce_and_consume(stack_settings: Settings, unique_names: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"it_kafka_{unique_names}"
    admin = KafkaAdminClient(
        bootstrap_servers=stack_settings.kafka_bootstrap, **stack_settings.kafka_client_options()
    )
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    try:
        producer = KafkaProducer(
            bootstrap_servers=stack_settings.kafka_bootstrap,
            **stack_settings.kafka_client_options(),
            acks="all",
        )
        for number in range(5):
            producer.send(topic, key=str(number).encode(), value=f"v{number}".encode())
        producer.flush(30)
        producer.close()
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=stack_settings.kafka_bootstrap,
            **stack_settings.kafka_client_options(),
            auto_offset_reset="earliest",
            consumer_timeout_ms=15_000,
        )
        values = set()
        for message in consumer:
            values.add(message.value.decode())
            if len(values) == 5:
                break
        consumer.close()
        assert values == {f"v{n}" for n in range(5)}
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_postgres_dsn_reaches_the_userstream_database(stack_settings: Settings, unique_names: str) -> None:
    import psycopg

    with psycopg.connect(stack_settings.postgres_dsn.get_secret_value(), autocommit=True) as conn:
        row = conn.execute("select current_user, current_database()").fetchone()
        assert row == ("userstream", "userstream")
        table = f"it_{unique_names}"
        conn.execute(f"create table {table} (id int primary key, doc jsonb)")
        try:
            conn.execute(f"insert into {table} values (1, %s::jsonb)", (json.dumps({"a": 1}),))
            assert conn.execute(f"select doc from {table}").fetchone() == ({"a": 1},)
        finally:
            conn.execute(f"drop table {table}")


def test_cassandra_write_and_read(stack_settings: Settings, unique_names: str) -> None:
    from userstream.storage.client import CassandraConfig, connect

    keyspace = f"it_{unique_names}"
    cluster, session = connect(CassandraConfig.from_settings(stack_settings))
    try:
        session.execute(
            f"create keyspace {keyspace} with replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
            timeout=30,
        )
        session.execute(f"create table {keyspace}.t (id int primary key, name text)", timeout=30)
        session.execute(f"insert into {keyspace}.t (id, name) values (1, 'ada')")
        assert session.execute(f"select name from {keyspace}.t where id = 1").one().name == "ada"
        release = session.execute("select release_version from system.local").one().release_version
        assert release.startswith("5.0")
    finally:
        session.execute(f"drop keyspace if exists {keyspace}", timeout=30)
        cluster.shutdown()


def test_spark_uses_the_resolved_connector_jars(stack_settings: Settings) -> None:
    names = [p.name for p in connector_jars(stack_settings)]
    assert any(n.startswith("spark-sql-kafka-0-10_2.13-4.1.") for n in names)
    # the token provider is pinned to 4.0.0 (see versions.env) and must be the only copy
    assert [n for n in names if n.startswith("spark-token-provider")] == [
        "spark-token-provider-kafka-0-10_2.13-4.0.0.jar"
    ]
    assert not [n for n in names if n.startswith(("scala-library", "slf4j-api", "hadoop-client"))]


def test_spark_batch_read_through_the_kafka_source(
    spark, stack_settings: Settings, unique_names: str
) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaProducer

    topic = f"it_spark_read_{unique_names}"
    producer = KafkaProducer(
        bootstrap_servers=stack_settings.kafka_bootstrap, **stack_settings.kafka_client_options(), acks="all"
    )
    for number in range(3):
        producer.send(topic, key=f"k{number}".encode(), value=json.dumps({"n": number}).encode())
    producer.flush(30)
    producer.close()

    rows = (
        spark.read.format("kafka")
        .options(**stack_settings.spark_kafka_options())
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value")
        .collect()
    )
    assert sorted((r["key"], json.loads(r["value"])["n"]) for r in rows) == [("k0", 0), ("k1", 1), ("k2", 2)]


def test_spark_batch_write_through_the_kafka_sink(spark, stack_settings: Settings, unique_names: str) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer

    topic = f"it_spark_write_{unique_names}"
    frame = spark.createDataFrame([("a", "1"), ("b", "2")], ["key", "value"])
    (
        frame.write.format("kafka")
        .options(**stack_settings.spark_kafka_options())
        .option("topic", topic)
        .save()
    )
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack_settings.kafka_bootstrap,
        **stack_settings.kafka_client_options(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )
    received = {}
    for message in consumer:
        received[message.key.decode()] = message.value.decode()
        if len(received) == 2:
            break
    consumer.close()
    assert received == {"a": "1", "b": "2"}
