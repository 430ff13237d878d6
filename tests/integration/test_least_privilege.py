"""Authentication and least privilege on the real local Kafka and Cassandra (access.yaml).

Each test uses its own topics and keyspace: the admin grants the definition's users the ACLs for
those names (``KafkaServer.apply_access``) and ``cassandra migrate`` grants the roles on the new
table, exactly as ``userstream local up`` and ``migrate`` do for the default names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import names_with_access

from userstream import access
from userstream.local.credentials import ADMIN, Client
from userstream.local.kafka import KafkaServer
from userstream.local.run import run_pipeline
from userstream.local.stack import LocalStack
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, CassandraError, connect
from userstream.storage.migration import migrate

As = Callable[[Settings, Client], Settings]


@pytest.fixture
def names(
    local_stack: LocalStack, stack_settings: Settings, unique_names: str, tmp_path: Path
) -> Iterator[Settings]:
    """This test's own topics and keyspace (settings without credentials), with the ACLs of
    access.yaml for them; topics and ACLs are removed afterwards."""
    with names_with_access(local_stack, stack_settings, unique_names, tmp_path) as settings:
        yield settings


def _producer(settings: Settings) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        max_block_ms=15_000,
        **settings.kafka_client_options(),
    )


def _send(settings: Settings, topic: str) -> None:
    producer = _producer(settings)
    try:
        producer.send(topic, key=b"k", value=b"{}").get(timeout=30)
    finally:
        producer.close(timeout=5)


def _read(settings: Settings, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records = 0
        for _ in range(5):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += len(batch)
        return records
    finally:
        consumer.close()


def test_the_acls_on_the_broker_are_the_definition(local_stack: LocalStack) -> None:
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    kafka = local_stack.component("kafka")
    assert isinstance(kafka, KafkaServer)
    admin = kafka.admin_client()
    try:
        found, _ = admin.describe_acls(
            ACLFilter(
                principal=None,
                host="*",
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
            )
        )
    finally:
        admin.close()
    definition = access.for_settings(local_stack.settings)
    wanted = {
        (f"User:{b.principal}", b.resource_type, b.name, b.pattern_type, b.operation)
        for b in access.acl_bindings(definition)
    }
    patterns = {ACLResourcePatternType.LITERAL: "literal", ACLResourcePatternType.PREFIXED: "prefix"}
    types = {ResourceType.TOPIC: "topic", ResourceType.GROUP: "group"}
    on_default_names = {
        (
            acl.principal,
            types.get(acl.resource_pattern.resource_type, "?"),
            acl.resource_pattern.resource_name,
            patterns.get(acl.resource_pattern.pattern_type, "?"),
            acl.operation.name.title().replace("_", ""),
        )
        for acl in found
        if acl.resource_pattern.resource_name
        in (
            local_stack.settings.kafka_topic,
            local_stack.settings.kafka_dlq_topic,
            local_stack.settings.stream_progress_group,
            "spark-kafka-source",
        )
    }
    assert on_default_names == wanted


def test_a_client_without_credentials_is_refused(names: Settings) -> None:
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):
        _send(names, names.kafka_topic)


def test_the_ingest_user_writes_the_topic_but_cannot_read_it_nor_write_the_dlq(
    names: Settings, settings_as: As
) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    ingest = settings_as(names, "ingest")
    assert ingest.kafka_username == access.principal("ingest")
    _send(ingest, names.kafka_topic)
    with pytest.raises(TopicAuthorizationFailedError):
        _read(ingest, names.kafka_topic)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(ingest, names.kafka_dlq_topic)


def test_the_stream_user_reads_the_topic_writes_the_dlq_but_cannot_write_the_topic(
    names: Settings, settings_as: As
) -> None:
    from kafka.errors import TopicAuthorizationFailedError

    _send(settings_as(names, "ingest"), names.kafka_topic)
    stream = settings_as(names, "stream")
    assert _read(stream, names.kafka_topic) == 1
    _send(stream, names.kafka_dlq_topic)
    with pytest.raises(TopicAuthorizationFailedError):
        _send(stream, names.kafka_topic)


def test_cassandra_roles_get_exactly_their_grants(names: Settings, settings_as: As) -> None:
    from cassandra import Unauthorized

    migrate(settings_as(names, "admin"))
    table = f"{names.cassandra_keyspace}.{names.cassandra_table}"
    insert = f"INSERT INTO {table} (id, first_name) VALUES (uuid(), 'x')"

    def session_as(client: Client) -> tuple[Any, Any]:
        chosen = settings_as(names, client)
        expected = {"admin": ADMIN, "stream": "userstream_writer", "checks": "userstream_reader"}
        assert chosen.cassandra_username == expected[client]
        return connect(CassandraConfig.from_settings(chosen))

    cluster, session = session_as("stream")
    try:
        session.execute(insert)
        # the writer only writes (MODIFY): reading is the reader's
        with pytest.raises(Unauthorized):
            session.execute(f"SELECT count(*) FROM {table}")
        with pytest.raises(Unauthorized):
            session.execute(f"DROP TABLE {table}")
    finally:
        cluster.shutdown()
    cluster, session = session_as("checks")
    try:
        assert session.execute(f"SELECT count(*) FROM {table}").one()[0] == 1
        with pytest.raises(Unauthorized):
            session.execute(insert)
    finally:
        cluster.shutdown()


def test_the_default_cassandra_superuser_is_gone(stack_settings: Settings) -> None:
    from pydantic import SecretStr

    default = stack_settings.model_copy(
        update={"cassandra_username": "cassandra", "cassandra_password": SecretStr("cassandra")}
    )
    with pytest.raises(CassandraError, match=r"AuthenticationFailed|Bad credentials"):
        connect(CassandraConfig.from_settings(default))


def test_the_pipeline_reconciles_with_least_privilege_principals(names: Settings, spark: Any) -> None:
    # no credentials in the settings: run_pipeline gives each step its own principal
    assert names.kafka_username is None
    assert names.cassandra_username is None
    summary = run_pipeline(names, 300, batch_size=100, timeout_s=300, echo=lambda _: None)
    assert summary.reconciliation.ok, summary.lines()
    assert summary.reconciliation.produced == 300
    assert summary.reconciliation.stored + summary.reconciliation.dead_lettered == 300
