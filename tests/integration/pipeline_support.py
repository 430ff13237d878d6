"""Helpers shared by the pipeline integration tests (real Kafka, Cassandra, PostgreSQL, Spark)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, connect


def isolated(settings: Settings, suffix: str, checkpoint_root: Path, **extra: Any) -> Settings:
    """Settings with this test's own topics, keyspace, staging schema and checkpoint."""
    update: dict[str, Any] = {
        "kafka_topic": f"users_{suffix}",
        "kafka_dlq_topic": f"users_{suffix}.dlq",
        "kafka_topic_partitions": 2,
        "cassandra_keyspace": f"ks_{suffix}",
        "staging_schema": f"stage_{suffix}",
        "checkpoint_location": str(checkpoint_root / f"ckpt_{suffix}"),
        "stream_trigger_interval": "1 second",
        "synthetic_seed": int(uuid.uuid4().int % 1_000_000),
        **extra,
    }
    return settings.model_copy(update=update)


@contextmanager
def names_with_access(
    local_stack: Any, admin_settings: Settings, suffix: str, checkpoint_root: Path, **extra: Any
) -> Iterator[Settings]:
    """:func:`isolated` settings (without credentials) whose topics get the ACLs of access.yaml
    (``KafkaServer.apply_access``); the ACLs, topics and keyspace are removed afterwards."""
    from userstream.local.kafka import KafkaServer, acl_objects

    settings = isolated(local_stack.settings, suffix, checkpoint_root, **extra)
    kafka = local_stack.component("kafka")
    assert isinstance(kafka, KafkaServer)
    bindings = kafka.apply_access(settings)
    try:
        yield settings
    finally:
        admin = kafka.admin_client()
        try:
            admin.delete_acls(acl_objects(bindings))
            admin.delete_topics([settings.kafka_topic, settings.kafka_dlq_topic])
        finally:
            admin.close()
        cluster, session = connect(CassandraConfig.from_settings(admin_settings))
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=120)
        finally:
            cluster.shutdown()


def table_ids(settings: Settings) -> list[uuid.UUID]:
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        rows = session.execute(f"SELECT id FROM {config.keyspace}.{config.table}", timeout=120)
        return [row.id for row in rows]
    finally:
        cluster.shutdown()


def table_column(settings: Settings, column: str) -> list[Any]:
    """One column of every row of the users table."""
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        rows = session.execute(f"SELECT {column} FROM {config.keyspace}.{config.table}", timeout=120)
        return [row[0] for row in rows]
    finally:
        cluster.shutdown()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
