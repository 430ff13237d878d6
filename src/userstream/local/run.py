"""``userstream run``: the whole pipeline once, end to end, with a reconciliation.

Migrate, ingest N synthetic users (a share of them broken on purpose), run the streaming app until
everything published has been processed, then check that every produced record is either a row
in Cassandra or a message on the dead-letter topic, never both and never neither.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from userstream.ingest.run import IngestSummary, ingest
from userstream.ingest.sources.synthetic import SyntheticSource
from userstream.ingest.staging import Staging
from userstream.local.credentials import client_settings
from userstream.progress import Snapshot, lag
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, connect, existing_ids
from userstream.storage.migration import migrate
from userstream.stream.runner import (
    APP_NAME,
    StreamTotals,
    caught_up,
    committed_offsets,
    run_stream,
    topic_end_offsets,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)


@dataclass
class Reconciliation:
    produced: int
    stored: int
    dead_lettered: int
    both: int
    missing: list[uuid.UUID] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and self.both == 0 and self.stored + self.dead_lettered == self.produced


def topic_messages(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every message on ``topic`` up to its end offsets when called, in partition order.

    Reads until each partition's position reaches its end offset, however slow the broker is;
    raises :class:`TimeoutError` after ``timeout_s`` instead of returning part of the topic.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    found: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return found
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                behind = {tp.partition: ends[tp] - consumer.position(tp) for tp in assigned}
                raise TimeoutError(
                    f"reading topic {topic}: {len(found)} messages in {timeout_s:g}s, still behind "
                    f"its end offsets by {behind} (partition: messages)"
                )
            for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
                found += [
                    record
                    for record in records
                    if record.offset < ends[TopicPartition(topic, record.partition)]
                ]
    finally:
        consumer.close()
    return found


def dead_letter_reasons(settings: Settings, timeout_s: float = 60.0) -> dict[str, dict[str, str]]:
    """Every message on the dead-letter topic: key -> headers (the last one per key wins)."""
    return {
        (record.key or b"").decode("utf-8", "replace"): {
            name: (value or b"").decode("utf-8", "replace") for name, value in record.headers
        }
        for record in topic_messages(settings, settings.kafka_dlq_topic, timeout_s)
    }


def reconcile(settings: Settings, ids: Iterable[uuid.UUID]) -> Reconciliation:
    wanted = set(ids)
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        stored = existing_ids(session, config, wanted)
    finally:
        cluster.shutdown()
    dead = {uuid.UUID(key) for key in dead_letter_reasons(settings) if _is_uuid(key)} & wanted
    missing = sorted(wanted - stored - dead)
    return Reconciliation(len(wanted), len(stored), len(dead), len(stored & dead), missing)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def sample_rows(settings: Settings, ids: Iterable[uuid.UUID], limit: int = 3) -> list[dict[str, Any]]:
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    rows: list[dict[str, Any]] = []
    try:
        columns = "id, first_name, last_name, email, postcode, nationality, dob, phone"
        query = f"SELECT {columns} FROM {config.keyspace}.{config.table} WHERE id = ?"  # noqa: S608
        statement = session.prepare(query)
        for record_id in sorted(ids)[: limit * 10]:
            row = session.execute(statement, (record_id,)).one()
            if row is not None:
                rows.append(row._asdict())
            if len(rows) >= limit:
                break
    finally:
        cluster.shutdown()
    return rows


@dataclass
class RunSummary:
    ingest: IngestSummary
    stream: StreamTotals
    reconciliation: Reconciliation
    seconds: float
    stream_seconds: float
    samples: list[dict[str, Any]]

    def stream_rate(self) -> float:
        busy = self.stream.busy_seconds()
        return (self.stream.stored + self.stream.dead_lettered) / busy if busy else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (``userstream run --json``)."""
        r = self.reconciliation
        return {
            "produced": r.produced,
            "published": self.ingest.published,
            "stored": r.stored,
            "dead_lettered": r.dead_lettered,
            "reconciled": r.ok,
            "missing": [str(record_id) for record_id in r.missing],
            "in_both": r.both,
            "seconds": round(self.seconds, 3),
            "ingest_seconds": round(self.ingest.seconds, 3),
            "stream_seconds": round(self.stream_seconds, 3),
            "ingest_records_per_second": round(self.ingest.rate, 1),
            "stream_records_per_second": round(self.stream_rate(), 1),
            "micro_batches": self.stream.batch_count,
            "stream_busy_seconds": round(self.stream.busy_seconds(), 3),
            "sample_rows": json.loads(json.dumps(self.samples, default=str)),
        }

    def lines(self) -> list[str]:
        r = self.reconciliation
        processed = self.stream.stored + self.stream.dead_lettered
        busy = self.stream.busy_seconds()
        return [
            "userstream run: summary",
            f"  produced        {r.produced} distinct records "
            f"({self.ingest.published} messages published by this run)",
            f"  stored          {r.stored} rows in Cassandra",
            f"  dead-lettered   {r.dead_lettered} records on the dead-letter topic",
            f"  reconciled      {'yes' if r.ok else 'NO'}"
            + ("" if r.ok else f" (missing {len(r.missing)}, in both {r.both})"),
            f"  wall time       {self.seconds:.1f} s (ingest {self.ingest.seconds:.1f} s, "
            f"stream {self.stream_seconds:.1f} s)",
            f"  throughput      ingest {self.ingest.rate:,.0f} records/s; stream "
            f"{self.stream_rate():,.0f} records/s "
            f"({processed} processed in {self.stream.batch_count} micro-batches, {busy:.1f} s busy)",
            "  sample rows:",
            *[f"    {row}" for row in self.samples],
        ]


def checkpoint_offsets(checkpoint_location: str) -> dict[int, int]:
    """Next offset per partition after the last batch a local checkpoint committed ({} if none).

    Spark's checkpoint (4.1.2, sql/core/.../execution/streaming/checkpointing/OffsetSeqLog.scala)
    writes ``offsets/<batch>``: a version line, a metadata line, then one JSON line per source,
    ``{"<topic>": {"<partition>": <offset>}}``; ``commits/<batch>`` marks the batch done.
    """
    folder = Path(checkpoint_location)
    try:
        done = [int(p.name) for p in (folder / "commits").iterdir() if p.name.isdigit()]
        lines = (folder / "offsets" / str(max(done))).read_text(encoding="utf-8").splitlines()
        source = json.loads(lines[2])
    except (OSError, ValueError, IndexError):
        return {}
    return {int(partition): int(offset) for topic in source.values() for partition, offset in topic.items()}


def batch_note(spark: SparkSession) -> str:
    """What the running micro-batch is doing, from Spark's status tracker (tasks of active stages)."""
    tracker = spark.sparkContext.statusTracker()
    stages = [info for info in map(tracker.getStageInfo, tracker.getActiveStageIds()) if info is not None]
    if not stages:
        return ""
    done = sum(info.numCompletedTasks for info in stages)
    return f"micro-batch running: tasks {done}/{sum(info.numTasks for info in stages)}"


def run_pipeline(
    settings: Settings,
    records: int,
    *,
    batch_size: int | None = None,
    timeout_s: float = 900.0,
    echo: Callable[[str], None] = print,
    progress: Callable[[Snapshot], None] | None = None,
    spark_output: Path | None = None,
) -> RunSummary:
    """``progress`` sees each stage's records done so far; ``spark_output`` receives the Spark
    driver JVM's output (default: this process's stdout and stderr)."""
    from userstream.stream.spark_session import build_spark_session

    report = progress or (lambda snapshot: None)
    began = time.monotonic()
    # each step as its own principal where the settings name none (the local stack's credentials)
    stream_settings = client_settings(settings, "stream")
    checks_settings = client_settings(settings, "checks")
    echo(f"migrating Cassandra {settings.cassandra_keyspace}.{settings.cassandra_table}")
    migrate(client_settings(settings, "admin"))
    source = SyntheticSource(seed=settings.synthetic_seed, broken_rate=settings.synthetic_broken_rate)
    echo(f"ingesting {records} synthetic users (seed {source.seed}, broken rate {source.broken_rate:g})")
    ingest_began = time.monotonic()
    report(Snapshot("ingest", 0, ingest_began, total=records))
    summary = ingest(
        client_settings(settings, "ingest"),
        source=source,
        records=records,
        batch_size=batch_size,
        on_batch=lambda done: report(Snapshot("ingest", done.fetched, ingest_began, total=records)),
    )
    ids = Staging(settings).record_ids(summary.batch_ids)
    targets = topic_end_offsets(stream_settings)
    start = checkpoint_offsets(settings.checkpoint_location)
    expected = lag(targets, start)
    stream_began = time.monotonic()
    echo(f"streaming {expected} records of {settings.kafka_topic} (Spark {settings.spark_master})")
    totals = StreamTotals()
    report(Snapshot("stream", 0, stream_began, total=expected, lag=expected, note="starting Spark"))
    spark = build_spark_session(stream_settings, APP_NAME, output=spark_output)

    def watch(query: StreamingQuery) -> bool:
        done = caught_up(query, targets)
        # a finished batch is counted before Spark reports its offsets: the smaller one is current
        behind = min(lag(targets, committed_offsets(query) or start), max(expected - totals.rows_in, 0))
        note = batch_note(spark) or ("caught up" if done else "waiting for the next micro-batch")
        report(Snapshot("stream", totals.rows_in, stream_began, total=expected, lag=behind, note=note))
        return done

    totals = run_stream(stream_settings, spark=spark, stop_when=watch, totals=totals, max_seconds=timeout_s)
    stream_seconds = time.monotonic() - stream_began
    echo("reconciling: every record must be a row in Cassandra or a dead letter, not both")
    reconciliation = reconcile(checks_settings, ids)
    samples = sample_rows(checks_settings, ids)
    return RunSummary(summary, totals, reconciliation, time.monotonic() - began, stream_seconds, samples)
