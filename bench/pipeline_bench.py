"""Benchmark of the data path on the local stack (not a test: it prints figures).

Phases, each with its own topics/keyspace so nothing else is disturbed:

1. ingestion: ``userstream ingest`` (synthetic -> PostgreSQL -> Kafka) as a subprocess:
   records/s published and its peak memory;
2. streaming throughput: ``userstream stream`` over the whole backlog (micro-batches of
   ``--max-offsets`` records): records/s from the first batch's start to the last batch's end
   (Spark start-up excluded), and the peak memory of the process tree (Python + JVM + workers);
3. raw sink ceiling: the Python driver alone upserting the same rows into a copy of the table
   (1 and 2 processes, each ``cassandra_write_concurrency`` requests in flight); the streaming
   throughput is reported as a ratio of the best;
4. freshness: a fresh stream with a short trigger while records are published at half the
   measured streaming throughput; freshness = Cassandra write time of the row - Kafka publish
   time of its message, p50/p95/p99.

Run: ``.venv/bin/python bench/pipeline_bench.py [--records 20000]`` with the local stack up.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from userstream import contract
from userstream.contract.ids import record_id
from userstream.ingest.publishing import encode_message, ensure_topics, producer_options
from userstream.ingest.sources.synthetic import generate
from userstream.local.credentials import client_settings
from userstream.settings import Settings, load_settings, settings_env
from userstream.storage.client import CassandraConfig, connect
from userstream.storage.migration import migrate
from userstream.stream.sink import write_rows

BATCH_LINE = re.compile(
    r"^(?P<ts>\S+ \S+) INFO userstream\.stream\.runner: batch \d+: "
    r"rows in (?P<rows>\d+), stored (?P<stored>\d+), "
    r"dead-lettered (?P<dead>\d+).*latency (?P<latency>[\d.]+)s"
)


class PeakMemory:
    """Peak RSS of a process and all its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(command: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int, str]:
    began = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        memory = PeakMemory(process.pid)
        code = process.wait()
    peak = memory.stop()
    return code, time.monotonic() - began, peak, log.read_text(errors="replace")


def stream_figures(output: str) -> tuple[int, float, float]:
    """(records processed, busy seconds, warm records/s) from the per-batch log lines.

    Warm: the batches after the first one, which alone pays for JIT, Python worker start and the
    Cassandra session of a fresh stream.
    """
    batches = []
    for line in output.splitlines():
        match = BATCH_LINE.match(line)
        if match and int(match["rows"]):
            end = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            batches.append((end - float(match["latency"]), end, int(match["stored"]) + int(match["dead"])))
    if not batches:
        return 0, 0.0, 0.0
    warm = batches[1:]
    warm_seconds = sum(b[1] - b[0] for b in warm)
    warm_rate = sum(b[2] for b in warm) / warm_seconds if warm_seconds else 0.0
    busy = max(b[1] for b in batches) - min(b[0] for b in batches)
    return sum(b[2] for b in batches), busy, warm_rate


def _ceiling_worker(config: CassandraConfig, table: str, rows: list[tuple[Any, ...]], queue: Any) -> None:
    cluster, session = connect(config)
    prepared = session.prepare(contract.insert_cql(config.keyspace, table))
    began = time.monotonic()
    for start in range(0, len(rows), 2000):
        write_rows(session, prepared, rows[start : start + 2000], config.concurrency, 3)
    queue.put((len(rows), time.monotonic() - began, psutil.Process().memory_info().rss))
    cluster.shutdown()


def sink_ceiling(settings: Settings, processes: int) -> tuple[float, int]:
    """Rows/s of the bare Python driver upserting the streamed rows into a copy of the table."""
    config = CassandraConfig.from_settings(settings)
    table = f"{config.table}_ceiling"
    cluster, session = connect(config)
    try:
        session.execute(contract.create_table_cql(config.keyspace, table))
        names = contract.table_definition().column_names
        rows = [
            tuple(getattr(row, name) for name in names)
            for row in session.execute(f"SELECT {', '.join(names)} FROM {config.keyspace}.{config.table}")
        ]
    finally:
        cluster.shutdown()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    share = (len(rows) + processes - 1) // processes
    workers = [
        context.Process(
            target=_ceiling_worker, args=(config, table, rows[i * share : (i + 1) * share], queue)
        )
        for i in range(processes)
    ]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    return sum(r[0] for r in results) / elapsed, max(r[2] for r in results)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def freshness(settings: Settings, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """Publish at ``rate`` records/s into a running stream; freshness percentiles (s)."""
    from kafka import KafkaProducer

    ensure_topics(settings)
    migrate(settings)
    command = [sys.executable, "-m", "userstream.cli", "stream", "--no-migrate", "--until-idle", "60"]
    log = workdir / "stream-freshness.log"
    with open(log, "wb") as out:
        stream = subprocess.Popen(command, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT)
        memory = PeakMemory(stream.pid)
        # wait until the query runs, then warm it up: the first micro-batch of a fresh stream pays
        # for JIT, Python worker start and the Cassandra session; freshness is a steady-state figure
        deadline = time.monotonic() + 180

        def batches_logged() -> list[int]:
            lines = log.read_text(errors="replace").splitlines()
            return [int(m["rows"]) for line in lines if (m := BATCH_LINE.match(line))]

        while not batches_logged() and time.monotonic() < deadline:  # the first, empty batch
            time.sleep(0.5)
        warm_up_began = time.monotonic()
        warm_up = KafkaProducer(**producer_options(settings))
        for index in range(200):
            document, _ = generate(settings.synthetic_seed + 2, index, 0.0)
            message = {
                "schema_version": 1,
                "id": str(record_id(document)),
                "source": "synthetic",
                "batch_id": "freshness-warm-up",
                "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "user": document,
            }
            warm_up.send(settings.kafka_topic, key=message["id"].encode(), value=encode_message(message))
        warm_up.close()
        while time.monotonic() < deadline and not any(rows > 0 for rows in batches_logged()):
            time.sleep(0.5)
        warm_up_seconds = time.monotonic() - warm_up_began
        producer = KafkaProducer(**{**producer_options(settings), "linger_ms": 5})
        batch_id = f"freshness-{uuid.uuid4().hex[:8]}"
        sent, began, index = 0, time.monotonic(), 0
        tick = 0.05
        while time.monotonic() - began < seconds:
            due = int((time.monotonic() - began) * rate)
            while sent < due:
                document, _ = generate(settings.synthetic_seed + 1, index, 0.0)
                index += 1
                message = {
                    "schema_version": 1,
                    "id": str(record_id(document)),
                    "source": "synthetic",
                    "batch_id": batch_id,
                    "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "user": document,
                }
                producer.send(settings.kafka_topic, key=message["id"].encode(), value=encode_message(message))
                sent += 1
            producer.flush()
            time.sleep(tick)
        producer.close()
        stream.wait(timeout=300)
    peak = memory.stop()
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        rows = session.execute(
            f"SELECT batch_id, published_at, writetime(email) AS written "
            f"FROM {config.keyspace}.{config.table}"
        )
        lags = [
            row.written / 1e6 - row.published_at.replace(tzinfo=UTC).timestamp()
            for row in rows
            if row.batch_id == batch_id
        ]
    finally:
        cluster.shutdown()
    if not lags:
        raise SystemExit(f"freshness: none of the {sent} published rows reached Cassandra; see {log}")
    return {
        "published": sent,
        "rate": sent / seconds,
        "measured": len(lags),
        "p50": percentile(lags, 50),
        "p95": percentile(lags, 95),
        "p99": percentile(lags, 99),
        "max": max(lags),
        "warm_up_s": round(warm_up_seconds, 1),
        "peak_rss": peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--max-offsets", type=int, default=10_000, help="records per micro-batch")
    parser.add_argument("--freshness-seconds", type=float, default=30.0)
    parser.add_argument("--freshness-trigger", default="500 milliseconds")
    args = parser.parse_args()

    suffix = "b" + uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"userstream-bench-{suffix}-"))
    # the benchmark creates its own topics and keyspace: the local stack's admin
    base = client_settings(load_settings(), "admin")
    settings = base.model_copy(
        update={
            "kafka_topic": f"bench_{suffix}",
            "kafka_dlq_topic": f"bench_{suffix}.dlq",
            "kafka_topic_partitions": 2,
            "cassandra_keyspace": f"bench_{suffix}",
            "staging_schema": f"bench_{suffix}",
            "checkpoint_location": str(workdir / "ckpt"),
            "stream_max_offsets_per_trigger": args.max_offsets,
            "stream_trigger_interval": "1 second",
        }
    )
    print(
        f"userstream pipeline benchmark: {args.records} records, {os.cpu_count()} cores, work dir {workdir}"
    )
    migrate(settings)

    code, _, ingest_peak, output = run_measured(
        [sys.executable, "-m", "userstream.cli", "ingest", "--records", str(args.records),
         "--batch-size", str(args.batch_size)],
        settings_env(settings),
        workdir / "ingest.log",
    )  # fmt: skip
    if code:
        print(output[-3000:])
        return 1
    ingest_rate = float(re.search(r"\(([\d,]+) records/s published\)", output)[1].replace(",", ""))  # type: ignore[index]

    code, _, stream_peak, output = run_measured(
        [sys.executable, "-m", "userstream.cli", "stream", "--no-migrate", "--until-idle", "10"],
        settings_env(settings),
        workdir / "stream.log",
    )
    if code:
        print(output[-3000:])
        return 1
    processed, busy, warm_rate = stream_figures(output)
    stream_rate = processed / busy if busy else 0.0

    ceiling_1, ceiling_1_rss = sink_ceiling(settings, 1)
    ceiling_2, ceiling_2_rss = sink_ceiling(settings, 2)
    ceiling = max(ceiling_1, ceiling_2)

    fresh_settings = settings.model_copy(
        update={
            "kafka_topic": f"bench_{suffix}_fresh",
            "kafka_dlq_topic": f"bench_{suffix}_fresh.dlq",
            "checkpoint_location": str(workdir / "ckpt-fresh"),
            "stream_trigger_interval": args.freshness_trigger,
            "stream_max_offsets_per_trigger": None,
            "stream_starting_offsets": "latest",
        }
    )
    fresh = freshness(fresh_settings, stream_rate / 2, args.freshness_seconds, workdir)

    mib = 1024 * 1024
    figures = {
        "ingestion_records_per_s": round(ingest_rate),
        "stream_records_per_s": round(stream_rate),
        "stream_processed": processed,
        "stream_busy_s": round(busy, 2),
        "sink_ceiling_records_per_s": {"1_process": round(ceiling_1), "2_processes": round(ceiling_2)},
        "stream_warm_records_per_s": round(warm_rate),
        "stream_to_ceiling_ratio": round(stream_rate / ceiling, 3) if ceiling else None,
        "stream_warm_to_ceiling_ratio": round(warm_rate / ceiling, 3) if ceiling else None,
        "freshness_s": {k: round(fresh[k], 3) for k in ("p50", "p95", "p99", "max")},
        "freshness_load_records_per_s": round(fresh["rate"]),
        "freshness_rows_measured": fresh["measured"],
        "freshness_warm_up_s": fresh["warm_up_s"],
        "peak_rss_mib": {
            "ingest": round(ingest_peak / mib),
            "stream_tree": round(stream_peak / mib),
            "stream_tree_freshness_run": round(fresh["peak_rss"] / mib),
            "ceiling_writer": round(max(ceiling_1_rss, ceiling_2_rss) / mib),
        },
    }
    print(json.dumps(figures, indent=2))
    ratio = stream_rate / ceiling if ceiling else 0.0
    print(
        f"targets: stream/ceiling >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'}; "
        f"freshness p99 <= 2 s at half throughput: {'met' if fresh['p99'] <= 2 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
