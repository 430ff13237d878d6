"""The streaming query: Kafka -> parse/validate/flatten -> Cassandra, rejects -> dead-letter topic.

Each micro-batch (``foreachBatch``) is parsed once, nothing cached: one job on the executors (the
Java writer of :mod:`userstream.stream.sink`) upserts the valid rows into Cassandra and counts
every record by reason, returning the Kafka partition, offset, reason and detail of each rejected
one. When there are rejects, a second job picks exactly those records out of the micro-batch
(Spark reads the same offsets from Kafka again; nothing is parsed again) and writes them to the
dead-letter topic with Spark's Kafka batch sink. Only then does Spark commit the batch to the
checkpoint. A crash anywhere in between replays the batch from the checkpoint: dead letters may
repeat, rows are rewritten with the same ids, nothing is lost. A query that fails stops the process
with a non-zero exit.
"""

from __future__ import annotations

import ast
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from userstream.errors import UserstreamError
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig
from userstream.stream import transforms
from userstream.stream.progress_commit import ProgressCommitter
from userstream.stream.sink import JvmSink

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


RECENT_BATCHES = 100


@dataclass
class StreamTotals:
    """Totals over every micro-batch, and the stats of the most recent ones only (a stream runs for
    months: its memory must not grow with the number of batches)."""

    window: int = RECENT_BATCHES
    recent: deque[BatchStats] = field(init=False)
    batch_count: int = 0
    rows_in: int = 0
    stored: int = 0
    dead_lettered: int = 0
    first_active_began: float | None = None
    last_active_finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.window)

    def add(self, stats: BatchStats) -> None:
        with self.lock:
            self.recent.append(stats)
            self.batch_count += 1
            self.rows_in += stats.rows_in
            self.stored += stats.stored
            self.dead_lettered += stats.dead_lettered
            if stats.rows_in:
                began = stats.finished_at - stats.seconds
                if self.first_active_began is None or began < self.first_active_began:
                    self.first_active_began = began
                if self.last_active_finished is None or stats.finished_at > self.last_active_finished:
                    self.last_active_finished = stats.finished_at

    def busy_seconds(self) -> float:
        """Wall time from the start of the first batch with input to the end of the last one."""
        if self.first_active_began is None or self.last_active_finished is None:
            return 0.0
        return self.last_active_finished - self.first_active_began

    def last_activity(self) -> float | None:
        return self.last_active_finished


class BatchWriter:
    """The ``foreachBatch`` function (runs on the driver, writes from the executors)."""

    def __init__(self, settings: Settings, totals: StreamTotals | None = None) -> None:
        self.settings = settings
        self.cassandra = CassandraConfig.from_settings(settings)
        self.kafka_options = {**settings.spark_kafka_options(), "kafka.acks": "all"}
        self.totals = totals or StreamTotals()
        self._sinks: dict[object, JvmSink] = {}
        self.processing_time_columns = transforms.processing_time_columns()

    def sink(self, spark: SparkSession) -> JvmSink:
        """The Java writer's handle, made once per Spark session."""
        key = spark._jsparkSession  # type: ignore[attr-defined]
        if key not in self._sinks:
            self._sinks.clear()
            self._sinks[key] = JvmSink(spark, self.cassandra)
        return self._sinks[key]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        began = time.monotonic()
        max_bytes = self.settings.stream_max_record_bytes
        # one pass: the executors upsert the valid records and count every record by reason
        result = self.sink(batch.sparkSession).write(
            transforms.sink_frame(transforms.parse(batch, max_bytes)),
            time.time(),
            self.processing_time_columns,
        )
        rejected = dict(sorted(result.reasons.items()))
        if result.rejections is not None:
            # the rejected records only, read again from the micro-batch's offsets with the reason
            # and detail the sink reported (validation's, or its own for rows it refused for good)
            letters = transforms.rejected_records(batch, result.rejections)
            (
                transforms.dead_letter_sink_frame(
                    transforms.dead_letters(letters, self.settings.dlq_max_value_bytes)
                )
                .write.format("kafka")
                .options(**self.kafka_options)
                .option("topic", self.settings.kafka_dlq_topic)
                .save()
            )
        stats = BatchStats(
            batch_id,
            result.rows_in,
            result.stored,
            result.dead_lettered,
            time.monotonic() - began,
            rejected,
            time.time(),
        )
        self.totals.add(stats)
        if result.rows_in or batch_id % 50 == 0:
            log.info(
                "batch %d: rows in %d, stored %d, dead-lettered %d%s, latency %.2fs",
                batch_id,
                result.rows_in,
                result.stored,
                result.dead_lettered,
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
    transforms.build_expressions(settings.stream_max_record_bytes)
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
