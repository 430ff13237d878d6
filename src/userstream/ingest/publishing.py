"""Publishing staged documents to Kafka: the outbox's relay.

Messages are keyed by record id and sent with ``acks=all`` by an idempotent, compressing,
batching producer. A staged row is marked published only after the broker acknowledged its
message; a crash in between leaves it unpublished and the next run sends it again. A resend can
put a second copy of a message on the topic, which the stream's upsert by id absorbs: the table
never holds duplicates.

A page of rows is claimed (:meth:`Staging.claim`) while it is sent, so concurrent publishers never
send the same row. Each row is settled on its own: acknowledged rows are marked published even when
others of the page failed; a failure (a message the broker refuses as too large, a delivery that
timed out) is recorded on its row, and a row that keeps failing with an error Kafka does not class
as retriable is parked after ``USERSTREAM_INGEST_PUBLISH_MAX_ATTEMPTS`` attempts, so it can never
block the rows behind it. A page that Kafka acknowledged none of (brokers unreachable) ends the
run with a :class:`PublishError` naming the cause.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from userstream.contract import MESSAGE_SCHEMA_VERSION
from userstream.errors import UserstreamError
from userstream.ingest.staging import Failure, Parked, StagedRow, Staging
from userstream.settings import Settings

log = logging.getLogger(__name__)


class PublishError(UserstreamError):
    """Kafka did not acknowledge some messages; they stay unpublished for the next run."""


def describe_kafka_error(exc: BaseException) -> str:
    """One line naming a Kafka client error (kafka-python's messages alone are often empty)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}"[:500] if text and text != name else name


def is_retriable(exc: BaseException) -> bool:
    """Kafka's own classification (kafka-python 3.0, kafka/errors.py: ``retriable`` of each error)."""
    return bool(getattr(exc, "retriable", False))


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
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    wanted = topics or [settings.kafka_topic, settings.kafka_dlq_topic]
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
        )
    except KafkaError as exc:
        raise PublishError(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({describe_kafka_error(exc)}); check "
            "USERSTREAM_KAFKA_BOOTSTRAP_SERVERS and the brokers; staged rows stay for the next run"
        ) from None
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
    except KafkaError as exc:
        raise PublishError(
            f"cannot check or create the topic(s) {', '.join(wanted)} ({describe_kafka_error(exc)})"
        ) from None
    finally:
        admin.close()


@dataclass
class PublishResult:
    published: int = 0
    failed: int = 0
    seconds: float = 0.0
    parked: list[Parked] = field(default_factory=list)
    # the first failures of this pass (row, error), for the report
    failures: list[Failure] = field(default_factory=list)


@dataclass
class _Delivery:
    acknowledged: list[tuple[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # rows not sent at all (the client gave up before them): neither published nor an attempt
    unsent: int = 0


class Publisher:
    def __init__(self, settings: Settings, staging: Staging) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings = settings
        self.staging = staging
        try:
            self.producer = KafkaProducer(**producer_options(settings))
        except KafkaError as exc:
            raise PublishError(
                f"cannot reach Kafka at {settings.kafka_bootstrap} ({describe_kafka_error(exc)}); check "
                "USERSTREAM_KAFKA_BOOTSTRAP_SERVERS and the brokers; staged rows stay for the next run"
            ) from None
        # each row is tried at most once per publisher (one ingestion run): a failing row waits for
        # the next run instead of being retried batch after batch
        self.since = staging.clock()

    def close(self) -> None:
        self.producer.close(timeout=30)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_pending(
        self, page_size: int = 5_000, progress: Callable[[int], None] | None = None
    ) -> PublishResult:
        """Send every pending staged row once; mark each one published once acknowledged.

        Rows that fail are recorded (and parked at the attempt limit) and not tried again by this
        publisher. Raises :class:`PublishError` when Kafka acknowledged nothing of a page.
        """
        result = PublishResult()
        began = time.monotonic()
        since = self.since
        limit = self.settings.ingest_publish_max_attempts
        while True:
            with self.staging.claim(page_size, not_tried_since=since) as claim:
                if not claim.rows:
                    break
                delivery = self._deliver(claim.rows)
                parked = claim.settle(delivery.acknowledged, delivery.failures, limit)
            result.published += len(delivery.acknowledged)
            result.failed += len(delivery.failures)
            result.parked += parked
            result.failures += delivery.failures[: max(0, 10 - len(result.failures))]
            for row in parked:
                log.warning(
                    "parked staged record %s (batch %s) after %d failed attempt(s): %s",
                    row.record_id,
                    row.batch_id,
                    row.attempts,
                    row.error,
                )
            if progress:
                progress(len(delivery.acknowledged))
            if not delivery.acknowledged and (delivery.unsent or any(f.retriable for f in delivery.failures)):
                result.seconds = time.monotonic() - began
                first = delivery.failures[0].error if delivery.failures else "nothing sent"
                raise PublishError(
                    f"Kafka at {self.settings.kafka_bootstrap} acknowledged none of {len(claim.rows)} "
                    f"message(s) (first error: {first}); they stay staged and unpublished: run the "
                    "ingestion again once the brokers are healthy"
                )
        result.seconds = time.monotonic() - began
        return result

    def _deliver(self, rows: list[StagedRow], *, isolate: bool = True) -> _Delivery:
        from kafka.errors import KafkaError, KafkaTimeoutError

        delivery = _Delivery()
        futures = []
        for index, row in enumerate(rows):
            try:
                value = encode_message(message_for(row))
            except (TypeError, ValueError) as exc:  # not representable as a UTF-8 JSON message
                delivery.failures.append(
                    Failure(row.batch_id, row.record_id, describe_kafka_error(exc), False)
                )
                continue
            try:
                future = self.producer.send(
                    self.settings.kafka_topic, key=str(row.record_id).encode("ascii"), value=value
                )
            except KafkaError as exc:
                delivery.failures.append(
                    Failure(row.batch_id, row.record_id, describe_kafka_error(exc), is_retriable(exc))
                )
                if is_retriable(exc):  # no metadata within max_block_ms: the brokers are away
                    delivery.unsent = len(rows) - index - 1
                    break
            else:
                futures.append((row, future))
        wait_s = producer_options(self.settings)["delivery_timeout_ms"] / 1000 + 10
        # the futures not done are reported one by one below
        with contextlib.suppress(KafkaTimeoutError):
            self.producer.flush(timeout=wait_s)
        refused = []
        for row, future in futures:
            if not future.is_done:
                delivery.failures.append(
                    Failure(row.batch_id, row.record_id, f"not acknowledged within {wait_s:.0f}s", True)
                )
            elif future.failed():
                error = future.exception
                if isolate and not is_retriable(error):
                    refused.append(row)
                else:
                    delivery.failures.append(
                        Failure(row.batch_id, row.record_id, describe_kafka_error(error), is_retriable(error))
                    )
            else:
                delivery.acknowledged.append((row.batch_id, row.record_id))
        # The broker refuses a whole record batch (e.g. MESSAGE_TOO_LARGE for the batch's size) and
        # kafka-python does not split it; worse, its idempotent producer then fails every later
        # send to that partition with the same error (observed with kafka-python 3.0.12 and Kafka
        # 4.3.0). So: a fresh producer, and the refused rows sent again one by one, each failure
        # followed by a fresh producer, so that only the row at fault is charged the failure.
        if refused:
            self._renew_producer()
        for row in refused:
            alone = self._deliver([row], isolate=False)
            delivery.acknowledged += alone.acknowledged
            delivery.failures += alone.failures
            if alone.failures:
                self._renew_producer()
        return delivery

    def _renew_producer(self) -> None:
        from kafka import KafkaProducer

        self.producer.close(timeout=30)
        self.producer = KafkaProducer(**producer_options(self.settings))
