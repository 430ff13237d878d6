"""The stream's progress, committed to a Kafka consumer group after each micro-batch.

Spark's Kafka source keeps its offsets in the query's checkpoint only and commits nothing to Kafka
(Spark 4.1, external/kafka-0-10-sql: KafkaSource/KafkaMicroBatchStream never commit a group
offset), and the checkpoint is a volume of the driver. So the driver commits each completed
batch's end offsets to the group ``USERSTREAM_STREAM_PROGRESS_GROUP``, where the health check
(:mod:`userstream.stream.health_check`) reads them with Describe rights only.

The commit is standalone: the committing consumer never subscribes nor joins the group, so
kafka-python sends the OffsetCommit with no generation and no member id, which the broker accepts
for a group with no members (kafka-python 3.0.12, coordinator/consumer.py,
_send_offset_commit_request: ``Generation.NO_GENERATION`` unless partitions are auto-assigned).
The broker checks Read on the group and Read on the topic (Kafka's OffsetCommit ACLs), which the
stream's principal has (charts/userstream/files/access.yaml).

The commit is for monitoring only: the stream resumes from its checkpoint, never from the group.
A failed commit is logged and retried with the next batch; it never stops the stream.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from userstream.settings import Settings
from userstream.stream.lag import progress_metadata

if TYPE_CHECKING:
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)
COMMIT_TIMEOUT_MS = 10_000
_WARN_EVERY_S = 60.0


class ProgressCommitter:
    """Commits the end offsets of each new completed batch of a query (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: Any = None
        self._committed: dict[int, int] | None = None
        self._warned_at = 0.0

    def _client(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                group_id=self.settings.stream_progress_group,
                enable_auto_commit=False,
                client_id="userstream-stream-progress",
                **self.settings.kafka_client_options(),
            )
        return self._consumer

    def commit(self, batch_id: int, offsets: dict[int, int]) -> bool:
        """Commit ``offsets`` (partition -> next offset) for ``batch_id``; False when it failed."""
        if offsets == self._committed:
            return True
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        metadata = progress_metadata(batch_id, datetime.now(UTC))
        try:
            self._client().commit(
                {
                    TopicPartition(self.settings.kafka_topic, partition): OffsetAndMetadata(
                        offset, metadata, -1
                    )
                    for partition, offset in offsets.items()
                },
                timeout_ms=COMMIT_TIMEOUT_MS,
            )
        except Exception as exc:  # monitoring must not stop the stream: retried with the next batch
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "could not commit the progress of batch %d to group %s: %s: %s",
                    batch_id,
                    self.settings.stream_progress_group,
                    type(exc).__name__,
                    exc,
                )
            self.close()  # a fresh client next time
            return False
        self._committed = dict(offsets)
        log.debug("progress of batch %d committed to %s", batch_id, self.settings.stream_progress_group)
        return True

    def observe(self, query: StreamingQuery) -> None:
        """Commit the query's last completed batch, if it moved since the last commit."""
        from userstream.stream.runner import committed_offsets

        progress = query.lastProgress
        offsets = committed_offsets(query)
        if progress is None or not offsets:
            return
        self.commit(int(progress.batchId), offsets)

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close(autocommit=False)
            except Exception as exc:  # closing a broken client: nothing left to do
                log.debug("closing the progress client: %s", exc)
