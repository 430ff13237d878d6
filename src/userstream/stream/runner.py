"""The streaming query: Kafka -> parse/validate/flatten -> Cassandra, rejects -> dead-letter topic.

Each micro-batch (``foreachBatch``) is parsed once and persisted; one pass over it on the
executors upserts the valid rows into Cassandra and counts every record by reason; when that count
found rejects, they are written to the dead-letter topic with Spark's Kafka batch sink (from the
persisted parse). Only then does Spark commit the batch to the checkpoint. A crash anywhere in
between replays the batch from the checkpoint: dead letters may repeat, rows are rewritten with
the same ids, nothing is lost. A query that fails stops the process with a non-zero exit.
"""

from __future__ import annotations

import ast
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from userstream.errors import UserstreamError
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig
from userstream.stream import transforms
from userstream.stream.progress_commit import ProgressCommitter
from userstream.stream.sink import record_writer

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)
APP_NAME = "userstream-users-stream"
QUERY_NAME = "users_to_cassandra"


class StreamError(UserstreamError):
    """The streaming query failed; the checkpoint lets a restart resume where it stopped."""


@dataclass(frozen=True)
class BatchStats:
    batch_id: int
    rows_in: int
    stored: int
    dead_lettered: int
    seconds: float
    reasons: dict[str, int]
    finished_at: float


@dataclass
class StreamTotals:
    batches: list[BatchStats] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stats: BatchStats) -> None:
        with self.lock:
            self.batches.append(stats)

    @property
    def rows_in(self) -> int:
        return sum(b.rows_in for b in self.batches)

    @property
    def stored(self) -> int:
        return sum(b.stored for b in self.batches)

    @property
    def dead_lettered(self) -> int:
        return sum(b.dead_lettered for b in self.batches)

    def busy_seconds(self) -> float:
        """Wall time from the start of the first batch with input to the end of the last one."""
        active = [b for b in self.batches if b.rows_in]
        if not active:
            return 0.0
        return max(b.finished_at for b in active) - min(b.finished_at - b.seconds for b in active)

    def last_activity(self) -> float | None:
        active = [b.finished_at for b in self.batches if b.rows_in]
        return max(active) if active else None


class BatchWriter:
    """The ``foreachBatch`` function (runs on the driver, writes from the executors)."""

    def __init__(self, settings: Settings, totals: StreamTotals | None = None) -> None:
        self.settings = settings
        self.cassandra = CassandraConfig.from_settings(settings)
        self.kafka_options = {**settings.spark_kafka_options(), "kafka.acks": "all"}
        self.totals = totals or StreamTotals()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        began = time.monotonic()
        parsed = transforms.parse(batch, self.settings.stream_max_record_bytes).persist()
        try:
            # one pass: the executors upsert the valid records and count every record by reason
            counts: dict[str | None, int] = {}
            stored = 0
            rejections: list[tuple[int, int, str, str]] = []
            for partition_counts, partition_stored, partition_rejections in (
                transforms.sink_records(parsed)
                .toJSON()
                .mapPartitions(record_writer(self.cassandra, transforms.REASON))
                .collect()
            ):
                stored += partition_stored
                rejections += partition_rejections
                for reason, n in partition_counts.items():
                    counts[reason] = counts.get(reason, 0) + n
            rows_in = sum(counts.values())
            rejected = {reason: n for reason, n in counts.items() if reason is not None}
            dead = sum(rejected.values())
            if dead:  # from the persisted parse: no second read of Kafka, no second parse
                letters = parsed
                if rejections:  # rows the sink refused for good: dead-lettered, not retried forever
                    found = batch.sparkSession.createDataFrame(rejections, transforms.SINK_REJECTION_SCHEMA)
                    letters = transforms.with_sink_rejections(parsed, found)
                (
                    transforms.dead_letter_sink_frame(
                        transforms.dead_letters(letters, self.settings.dlq_max_value_bytes)
                    )
                    .write.format("kafka")
                    .options(**self.kafka_options)
                    .option("topic", self.settings.kafka_dlq_topic)
                    .save()
                )
        finally:
            parsed.unpersist()
        stats = BatchStats(batch_id, rows_in, stored, dead, time.monotonic() - began, rejected, time.time())
        self.totals.add(stats)
        if rows_in or batch_id % 50 == 0:
            log.info(
                "batch %d: rows in %d, stored %d, dead-lettered %d%s, latency %.2fs",
                batch_id,
                rows_in,
                stored,
                dead,
                f" {rejected}" if rejected else "",
                stats.seconds,
            )


def stream_session(settings: Settings) -> SparkSession:
    """The app's SparkSession."""
    from userstream.stream.spark_session import build_spark_session

    return build_spark_session(settings, APP_NAME)


def kafka_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**settings.spark_kafka_options())
        .option("subscribe", settings.kafka_topic)
        .option("startingOffsets", settings.stream_starting_offsets)
        .option("includeHeaders", "false")
    )
    if settings.stream_max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.stream_max_offsets_per_trigger))
    return reader.load()


def start_query(spark: SparkSession, settings: Settings, writer: BatchWriter) -> StreamingQuery:
    query = (
        kafka_stream(spark, settings)
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(writer)
        .option("checkpointLocation", settings.checkpoint_location)
        .trigger(processingTime=settings.stream_trigger_interval)
        .start()
    )
    log.info(
        "streaming %s -> %s.%s (dead letters -> %s), checkpoint %s, trigger %s",
        settings.kafka_topic,
        settings.cassandra_keyspace,
        settings.cassandra_table,
        settings.kafka_dlq_topic,
        settings.checkpoint_location,
        settings.stream_trigger_interval,
    )
    return query


def committed_offsets(query: StreamingQuery, which: str = "endOffset") -> dict[int, int] | None:
    """Next offset per partition of the last completed batch (from the query's progress);
    ``which="latestOffset"``: the topic's end offsets the source saw at that batch."""
    progress = query.lastProgress
    if not progress or not progress.sources:
        return None
    # PySpark 4.1 keeps a source's offsets as str() of the parsed JSON, a Python literal
    # (pyspark/sql/streaming/listener.py, SourceProgress.fromJson: endOffset=str(j["endOffset"]))
    end = ast.literal_eval(progress.sources[0][which])
    if not end:
        return None
    return {
        int(partition): int(offset) for partitions in end.values() for partition, offset in partitions.items()
    }


def topic_end_offsets(settings: Settings) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        partitions = consumer.partitions_for_topic(settings.kafka_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.kafka_topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


def caught_up(query: StreamingQuery, targets: dict[int, int]) -> bool:
    done = committed_offsets(query) or {}
    return all(done.get(partition, 0) >= offset for partition, offset in targets.items() if offset > 0)


def run_stream(
    settings: Settings,
    *,
    spark: SparkSession | None = None,
    until_idle: float | None = None,
    max_seconds: float | None = None,
    stop_when: Callable[[StreamingQuery], bool] | None = None,
    totals: StreamTotals | None = None,
    poll_seconds: float = 0.5,
) -> StreamTotals:
    """Run the query until a stop condition (or forever); raise :class:`StreamError` if it fails.

    ``until_idle``: stop after this many seconds without input rows (once something arrived,
    or from the start when the topic is empty). ``max_seconds``: stop after this long.
    ``stop_when``: stop when it returns True (checked after each poll). SIGTERM stops cleanly.
    """
    if spark is None:
        spark = stream_session(settings)
    writer = BatchWriter(settings, totals)
    return _run_query(
        spark, settings, writer, time.monotonic(), until_idle, max_seconds, stop_when, poll_seconds
    )


def _run_query(
    spark: SparkSession,
    settings: Settings,
    writer: BatchWriter,
    began: float,
    until_idle: float | None,
    max_seconds: float | None,
    stop_when: Callable[[StreamingQuery], bool] | None,
    poll_seconds: float,
) -> StreamTotals:
    query = start_query(spark, settings, writer)
    progress = ProgressCommitter(settings)  # the health check's view of the stream
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reason = "forever"
    try:
        while not stop.is_set():
            if not query.isActive:
                break
            try:
                query.awaitTermination(poll_seconds)  # type: ignore[arg-type]
            except Exception:  # the query failed: reported below with its cause
                break
            progress.observe(query)
            now = time.monotonic()
            if max_seconds is not None and now - began >= max_seconds:
                reason = f"ran {max_seconds:g}s"
                break
            if until_idle is not None:
                last = writer.totals.last_activity()
                idle_since = began if last is None else max(began, now - (time.time() - last))
                if now - idle_since >= until_idle and not query.status["isTriggerActive"]:
                    reason = f"idle for {until_idle:g}s"
                    break
            if stop_when is not None and stop_when(query):
                reason = "caught up"
                break
        else:
            reason = "SIGTERM"
    finally:
        if query.isActive:
            log.info("stopping the streaming query (%s)", reason)
            query.stop()
        progress.observe(query)  # the batch that completed while stopping
        progress.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    failure = query.exception()
    if failure is not None:
        raise StreamError(f"the streaming query failed: {_describe(failure)}")
    return writer.totals


def _describe(failure: object) -> str:
    text = str(failure)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:400] if lines else "unknown error"
