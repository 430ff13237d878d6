"""Publishing staged documents to Kafka: the outbox's relay.

Messages are keyed by record id and sent with ``acks=all`` by an idempotent, compressing,
batching producer. A staged row is marked published only after the broker acknowledged its
message; a crash in between leaves it unpublished and the next run sends it again. A resend can
put a second copy of a message on the topic, which the stream's upsert by id absorbs: the table
never holds duplicates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from userstream.contract import MESSAGE_SCHEMA_VERSION
from userstream.errors import UserstreamError
from userstream.ingest.staging import StagedRow, Staging
from userstream.settings import Settings

log = logging.getLogger(__name__)


class PublishError(UserstreamError):
    """Kafka did not acknowledge some messages; they stay unpublished for the next run."""


def iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message_for(row: StagedRow) -> dict[str, Any]:
    """The topic message of a staged row (user_message.v1)."""
    return {
        "schema_version": MESSAGE_SCHEMA_VERSION,
        "id": str(row.record_id),
        "source": row.source,
        "batch_id": row.batch_id,
        "fetched_at": iso_utc(row.fetched_at),
        "user": row.document,
    }


def encode_message(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def producer_options(settings: Settings) -> dict[str, Any]:
    compression = None if settings.kafka_compression_type == "none" else settings.kafka_compression_type
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 5,
        "retries": 2_147_483_647,
        "delivery_timeout_ms": 120_000,
        "compression_type": compression,
        "linger_ms": settings.kafka_linger_ms,
        "batch_size": 256 * 1024,
        "client_id": "userstream-ingest",
        **settings.kafka_client_options(),
    }


def ensure_topics(settings: Settings, topics: list[str] | None = None) -> None:
    """Create the users topic and the dead-letter topic when they do not exist (Strimzi's
    KafkaTopic resources usually create them first in a cluster)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = topics or [settings.kafka_topic, settings.kafka_dlq_topic]
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        missing = [topic for topic in wanted if topic not in set(admin.list_topics())]
        for topic in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_topic_replication_factor,
                        )
                    ]
                )
                log.info("created topic %s (%d partitions)", topic, settings.kafka_topic_partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


@dataclass
class PublishResult:
    published: int = 0
    failed: int = 0
    seconds: float = 0.0


class Publisher:
    def __init__(self, settings: Settings, staging: Staging) -> None:
        from kafka import KafkaProducer

        self.settings = settings
        self.staging = staging
        self.producer = KafkaProducer(**producer_options(settings))

    def close(self) -> None:
        self.producer.close(timeout=30)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_pending(
        self, page_size: int = 5_000, progress: Callable[[int], None] | None = None
    ) -> PublishResult:
        """Send every unpublished staged row; mark each one published once acknowledged."""
        result = PublishResult()
        began = time.monotonic()
        while True:
            rows = self.staging.unpublished(page_size)
            if not rows:
                break
            futures = [
                (
                    row,
                    self.producer.send(
                        self.settings.kafka_topic,
                        key=str(row.record_id).encode("ascii"),
                        value=encode_message(message_for(row)),
                    ),
                )
                for row in rows
            ]
            self.producer.flush(timeout=120)
            acknowledged, problems = [], []
            for row, future in futures:
                try:
                    future.get(timeout=60)
                except Exception as exc:  # a broker or timeout error of this one message
                    problems.append(f"{row.record_id}: {exc}")
                else:
                    acknowledged.append((row.batch_id, row.record_id))
            self.staging.mark_published(acknowledged)
            result.published += len(acknowledged)
            result.failed += len(problems)
            if progress:
                progress(len(acknowledged))
            if problems:
                result.seconds = time.monotonic() - began
                raise PublishError(
                    f"Kafka did not acknowledge {len(problems)} message(s) (first: {problems[0]}); they stay "
                    "staged and unpublished: run the ingestion again once the brokers are healthy"
                )
        result.seconds = time.monotonic() - began
        return result
