"""``userstream run``: the whole pipeline once, end to end, with a reconciliation.

Migrate, ingest N synthetic users (a share of them broken on purpose), run the streaming app until
everything published has been processed, then check that every produced record is either a row
in Cassandra or a message on the dead-letter topic, never both and never neither.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from userstream.ingest.run import IngestSummary, ingest
from userstream.ingest.sources.synthetic import SyntheticSource
from userstream.ingest.staging import Staging
from userstream.local.credentials import client_settings
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, connect, existing_ids
from userstream.storage.migration import migrate
from userstream.stream.runner import StreamTotals, caught_up, run_stream, topic_end_offsets

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


def dead_letter_reasons(settings: Settings, timeout_s: float = 30.0) -> dict[str, dict[str, str]]:
    """Every message on the dead-letter topic: key -> headers (the last one per key wins)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    found: dict[str, dict[str, str]] = {}
    try:
        partitions = consumer.partitions_for_topic(settings.kafka_dlq_topic) or set()
        assigned = [TopicPartition(settings.kafka_dlq_topic, p) for p in partitions]
        if not assigned:
            return found
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in assigned) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
                for record in records:
                    key = (record.key or b"").decode("utf-8", "replace")
                    found[key] = {
                        name: (value or b"").decode("utf-8", "replace") for name, value in record.headers
                    }
    finally:
        consumer.close()
    return found


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
            f"{processed / busy if busy else 0:,.0f} records/s "
            f"({processed} processed in {len(self.stream.batches)} micro-batches, {busy:.1f} s busy)",
            "  sample rows:",
            *[f"    {row}" for row in self.samples],
        ]


def run_pipeline(
    settings: Settings,
    records: int,
    *,
    batch_size: int | None = None,
    timeout_s: float = 900.0,
    echo: Callable[[str], None] = print,
) -> RunSummary:
    began = time.monotonic()
    # each step as its own principal where the settings name none (the local stack's credentials)
    stream_settings = client_settings(settings, "stream")
    checks_settings = client_settings(settings, "checks")
    echo(f"migrating Cassandra {settings.cassandra_keyspace}.{settings.cassandra_table}")
    migrate(client_settings(settings, "admin"))
    source = SyntheticSource(seed=settings.synthetic_seed, broken_rate=settings.synthetic_broken_rate)
    echo(f"ingesting {records} synthetic users (seed {source.seed}, broken rate {source.broken_rate:g})")
    summary = ingest(
        client_settings(settings, "ingest"), source=source, records=records, batch_size=batch_size, echo=echo
    )
    ids = Staging(settings).record_ids(summary.batch_ids)
    targets = topic_end_offsets(stream_settings)
    echo(f"streaming until offsets {targets} of {settings.kafka_topic} are processed")
    stream_began = time.monotonic()
    totals = run_stream(
        stream_settings, stop_when=lambda query: caught_up(query, targets), max_seconds=timeout_s
    )
    stream_seconds = time.monotonic() - stream_began
    reconciliation = reconcile(checks_settings, ids)
    samples = sample_rows(checks_settings, ids)
    return RunSummary(summary, totals, reconciliation, time.monotonic() - began, stream_seconds, samples)
