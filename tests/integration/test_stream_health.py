"""The stream's health check against the real local Kafka: the stream commits its progress to its
group after each batch, the Describe-only ``health`` principal reads lag from offsets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import names_with_access

from userstream.local.credentials import Client
from userstream.local.run import run_pipeline
from userstream.local.stack import LocalStack
from userstream.settings import Settings
from userstream.stream.health_check import check


@pytest.fixture
def names(
    local_stack: LocalStack, stack_settings: Settings, unique_names: str, tmp_path: Path
) -> Iterator[Settings]:
    """This test's topics, keyspace and progress group, with the ACLs of access.yaml for them."""
    with names_with_access(
        local_stack, stack_settings, unique_names, tmp_path, stream_progress_group=f"progress_{unique_names}"
    ) as settings:
        yield settings


def _publish(settings: Settings, count: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        max_block_ms=15_000,
        **settings.kafka_client_options(),
    )
    try:
        for i in range(count):
            producer.send(settings.kafka_topic, key=f"k{i}".encode(), value=b"{}")
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def test_after_a_stream_run_the_lag_is_zero_and_a_publish_without_a_stream_shows(
    names: Settings, settings_as: Any, spark: Any
) -> None:
    def as_(client: Client) -> Settings:
        result: Settings = settings_as(names, client)
        return result

    health = as_("health")
    assert health.kafka_username == "userstream-health"

    summary = run_pipeline(names, 120, batch_size=60, timeout_s=300, echo=lambda _: None)
    assert summary.reconciliation.ok, summary.lines()

    after_run = check(health)
    assert after_run.healthy, after_run.message
    assert after_run.lag == 0
    assert "caught up" in after_run.message
    assert "last batch" in after_run.message, "the stream committed its progress"
    # idle is healthy however long it stays idle
    much_later = check(health, now=datetime.now(UTC) + timedelta(days=7))
    assert much_later.healthy, much_later.message

    _publish(as_("ingest"), 5)  # no stream runs now
    waiting = check(health)
    assert waiting.lag == 5
    assert waiting.healthy, "records published a moment ago: catching up, not stuck"
    assert "catching up" in waiting.message
    # the same records seen from beyond the allowed wait: the stream is stuck
    stuck = check(health, now=datetime.now(UTC) + timedelta(minutes=names.health_max_wait_minutes + 1))
    assert not stuck.healthy
    assert (stuck.lag, stuck.overdue) == (5, 5)
    assert "not keeping up" in stuck.message


def _poll_until_refused(consumer: Any) -> None:
    for _ in range(10):
        consumer.poll(timeout_ms=1000)


def test_the_health_principal_reads_offsets_but_no_record(names: Settings, settings_as: Any) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import TopicAuthorizationFailedError

    _publish(settings_as(names, "ingest"), 1)
    health: Settings = settings_as(names, "health")
    assert check(health).lag == 1
    consumer = KafkaConsumer(
        bootstrap_servers=health.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **health.kafka_client_options(),
    )
    try:
        partitions = [TopicPartition(names.kafka_topic, p) for p in range(names.kafka_topic_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        with pytest.raises(TopicAuthorizationFailedError):
            _poll_until_refused(consumer)
    finally:
        consumer.close()
