"""Benchmark of the data path on the local stack (not a test: it prints figures and writes JSON).

Phases, each with its own topics/keyspace/checkpoints so nothing else is disturbed:

1. ingestion: ``userstream ingest`` (synthetic -> PostgreSQL -> Kafka) of the backlog as a
   subprocess: records/s published and its peak memory;
2. stream throughput: ``userstream stream`` over the whole backlog (the headline: ``--master`` and
   micro-batches of ``--max-offsets`` records), then the same backlog again with local[1] vs
   local[2] and with each batch size of ``--sweep``; each run: records/s from the first batch's
   start to the last batch's end (JVM start-up excluded) and over the wall time of the process,
   and the peak memory of its process tree (Python driver + JVM);
3. write ceiling: the Cassandra Java driver alone (``WriteCeiling`` of spark-apps/cassandra-writer:
   asynchronous upserts, ``--ceiling-in-flight`` requests in flight, no Spark, no Python) upserting
   the streamed rows into a copy of the table after one warm-up pass; the stream is reported as a
   ratio of it;
4. freshness: a fresh stream (trigger ``--freshness-trigger``) while records are published at half
   the headline throughput; freshness = Cassandra write time of the row - Kafka timestamp of its
   message, p50/p95/p99.

Each figure carries ``os.getloadavg()`` at its start and end: on a shared machine they are only
comparable at similar load. Run: ``make bench`` (brings the local stack up first) or
``.venv/bin/python bench/pipeline_bench.py [--records 40000] [--output FILE]``.
"""

from __future__ import annotations

import argparse
import json
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
from userstream.local import writer_jar
from userstream.local.credentials import client_settings
from userstream.settings import Settings, load_settings, settings_env
from userstream.storage.client import CassandraConfig, connect
from userstream.storage.migration import migrate
from userstream.stream.spark_session import spark_home_jars

BATCH_LINE = re.compile(
    r"^(?P<ts>\S+ \S+) INFO userstream\.stream\.runner: batch \d+: rows in (?P<rows>\d+), "
    r"stored (?P<stored>\d+), dead-lettered (?P<dead>\d+).*latency (?P<latency>[\d.]+)s"
)
MIB = 1024 * 1024


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class PeakMemory:
    """Peak RSS of a process and all its descendants, sampled every 0.2 s, and the CPU seconds they
    used (user + system, the last sample of each process): on a shared machine CPU per record is a
    steadier figure than wall-clock rates."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                total = 0
                for process in tree:
                    with process.oneshot():
                        total += process.memory_info().rss
                        times = process.cpu_times()
                        self.cpu[process.pid] = times.user + times.system
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.2)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def cassandra_cpu_seconds(settings: Settings) -> float | None:
    """CPU seconds the local stack's Cassandra has used so far (None when not found)."""
    try:
        from userstream.local.stack import LocalStack

        record = LocalStack(settings).component("cassandra").running_record()
        if record is None:
            return None
        times = psutil.Process(record.pid).cpu_times()
        return float(times.user + times.system)
    except (psutil.Error, Exception):
        return None


LAST_CPU: dict[str, float] = {}


def run_measured(command: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int, str]:
    began = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        memory = PeakMemory(process.pid)
        code = process.wait()
    peak = memory.stop()
    LAST_CPU["tree"] = memory.cpu_seconds
    return code, time.monotonic() - began, peak, log.read_text(errors="replace")


def batch_lines(output: str) -> list[tuple[float, float, int]]:
    """(start, end, records) of every micro-batch with input, from the stream's log lines."""
    batches = []
    for line in output.splitlines():
        match = BATCH_LINE.match(line)
        if match and int(match["rows"]):
            end = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            batches.append((end - float(match["latency"]), end, int(match["stored"]) + int(match["dead"])))
    return batches


def stream_figures(output: str) -> dict[str, Any]:
    """Records, busy seconds (first batch's start to last batch's end) and records/s; warm: the
    batches after the first, which alone pays for code generation, JIT and the Cassandra session."""
    batches = batch_lines(output)
    if not batches:
        return {"processed": 0, "busy_s": 0.0, "records_per_s": 0.0, "warm_records_per_s": None}
    warm = batches[1:]
    warm_seconds = sum(b[1] - b[0] for b in warm)
    busy = max(b[1] for b in batches) - min(b[0] for b in batches)
    processed = sum(b[2] for b in batches)
    return {
        "processed": processed,
        "batches": len(batches),
        "busy_s": round(busy, 2),
        "records_per_s": round(processed / busy) if busy else 0,
        "warm_records_per_s": round(sum(b[2] for b in warm) / warm_seconds) if warm_seconds else None,
        "first_batch_s": round(batches[0][1] - batches[0][0], 2),
    }


def stream_env(run: Settings, code_dir: Path | None) -> dict[str, str]:
    """The environment of a stream subprocess with ``run``'s settings."""
    env = settings_env(run)
    if code_dir is not None:  # another checkout's code (e.g. the main branch, for a before/after)
        env["PYTHONPATH"] = str(code_dir / "src")
    return env


def process_figures(run: Settings, wall: float, peak: int, before: list[float]) -> dict[str, Any]:
    """What every stream run reports about its process, its settings and the machine's load."""
    return {
        "master": run.spark_master,
        "max_offsets_per_trigger": run.stream_max_offsets_per_trigger,
        "process_wall_s": round(wall, 1),
        "peak_rss_mib": round(peak / MIB),
        "loadavg_before": before,
        "loadavg_after": load(),
    }


def stream_run(
    settings: Settings, name: str, workdir: Path, code_dir: Path | None, expected: int, **update: Any
) -> dict[str, Any]:
    """``userstream stream`` over the whole topic from a fresh checkpoint; its figures."""
    run = settings.model_copy(
        update={
            "checkpoint_location": str(workdir / f"ckpt-{name}"),
            "stream_starting_offsets": "earliest",
            **update,
        }
    )
    env = stream_env(run, code_dir)
    before = load()
    cassandra_before = cassandra_cpu_seconds(settings)
    code, wall, peak, output = run_measured(
        [sys.executable, "-m", "userstream.cli", "-v", "stream", "--no-migrate", "--until-idle", "30"],
        env,
        workdir / f"stream-{name}.log",
    )
    cassandra_after = cassandra_cpu_seconds(settings)
    if code:
        raise SystemExit(f"stream run {name} failed (exit {code}):\n{output[-3000:]}")
    figures = stream_figures(output)
    if figures["processed"] < expected:
        raise SystemExit(
            f"stream run {name} processed {figures['processed']} of {expected} records; see {workdir}"
        )
    records = figures["processed"] or 1
    figures.update(
        {
            "stream_tree_cpu_s": round(LAST_CPU["tree"], 1),
            "stream_tree_cpu_us_per_record": round(LAST_CPU["tree"] / records * 1e6),
            "cassandra_cpu_us_per_record": (
                round((cassandra_after - cassandra_before) / records * 1e6)
                if cassandra_before is not None and cassandra_after is not None
                else None
            ),
            **process_figures(run, wall, peak, before),
        }
    )
    print(f"  {name}: {json.dumps(figures)}", flush=True)
    return figures


def warm_run(
    settings: Settings, workdir: Path, code_dir: Path | None, passes: int, **update: Any
) -> dict[str, Any]:
    """The stream over the backlog ``passes`` times in one JVM (warm_stream.py): the rate once the
    JIT has compiled the stream's code."""
    run = settings.model_copy(update={"stream_starting_offsets": "earliest", **update})
    env = stream_env(run, code_dir)
    before = load()
    command = [sys.executable, str(Path(__file__).with_name("warm_stream.py")), "--passes", str(passes)]
    code, wall, peak, output = run_measured(command, env, workdir / "stream-warm.log")
    if code:
        raise SystemExit(f"the warm stream failed (exit {code}):\n{output[-3000:]}")
    runs = [json.loads(line[line.index("{") :]) for line in output.splitlines() if line.startswith('{"pass"')]
    figures = {
        "passes": runs,
        "last_pass_records_per_s": runs[-1]["records_per_s"] if runs else 0,
        "stream_tree_cpu_s": round(LAST_CPU["tree"], 1),
        **process_figures(run, wall, peak, before),
    }
    print(f"  warm: {json.dumps(figures)}", flush=True)
    return figures


def write_ceiling(settings: Settings, in_flight: int, workdir: Path) -> dict[str, Any]:
    """Rows/s of the Java driver alone upserting the streamed rows into a copy of the table."""
    config = CassandraConfig.from_settings(settings)
    copy = f"{config.table}_ceiling"
    cluster, session = connect(config)
    try:
        session.execute(contract.create_table_cql(config.keyspace, copy), timeout=60)
    finally:
        cluster.shutdown()
    jar = writer_jar.built_jar(settings.cache_dir)
    spark_jars = spark_home_jars()
    if jar is None or spark_jars is None:
        raise SystemExit("the Cassandra writer jar is not built: run `make artifacts`")
    # what the writer finds on Spark's classpath in the stream: slf4j and Jackson (see its pom.xml)
    patterns = ("slf4j-api-*.jar", "jackson-*.jar")
    provided = [p for pattern in patterns for p in sorted(spark_jars.glob(pattern))]
    options = {
        "contact_points": ",".join(config.contact_points),
        "port": config.port,
        "local_dc": config.local_dc,
        "keyspace": config.keyspace,
        "table": copy,
        "source": config.table,
        "username": config.username or "",
        "password": config.password or "",
        "consistency": config.write_consistency,
        "max_in_flight": in_flight,
        "warmup": 1,
    }
    before = load()
    command = [
        "java", "-Xmx1g", "-cp", os.pathsep.join(str(p) for p in [jar, *provided]), writer_jar.CEILING_CLASS,
        *[f"{key}={value}" for key, value in options.items()],
    ]  # fmt: skip
    log = workdir / "ceiling.log"
    code, _, peak, output = run_measured(command, dict(os.environ), log)
    if code:
        raise SystemExit(f"the write ceiling failed (exit {code}):\n{output[-3000:]}")
    result = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    result.update(
        {
            "peak_rss_mib": round(peak / MIB),
            "writer_cpu_s_incl_read_and_warm_up": round(LAST_CPU["tree"], 1),
            "loadavg_before": before,
            "loadavg_after": load(),
        }
    )
    print(f"  ceiling: {json.dumps(result)}", flush=True)
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _message(seed: int, index: int, batch_id: str) -> tuple[bytes, bytes]:
    document, _ = generate(seed, index, 0.0)
    message = {
        "schema_version": 1,
        "id": str(record_id(document)),
        "source": "synthetic",
        "batch_id": batch_id,
        "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "user": document,
    }
    return message["id"].encode(), encode_message(message)


def freshness(settings: Settings, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """Publish at ``rate`` records/s into a running stream; freshness percentiles (s)."""
    from kafka import KafkaProducer

    ensure_topics(settings)
    migrate(settings)
    batch_id = f"freshness-{uuid.uuid4().hex[:8]}"
    # messages made beforehand: the producer's loop only sends (the machine's cores are the stream's)
    messages = [_message(settings.synthetic_seed + 1, i, batch_id) for i in range(int(rate * seconds) + 1)]
    command = [sys.executable, "-m", "userstream.cli", "-v", "stream", "--no-migrate", "--until-idle", "20"]
    log = workdir / "stream-freshness.log"
    before = load()
    with open(log, "wb") as out:
        stream = subprocess.Popen(command, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT)
        memory = PeakMemory(stream.pid)
        deadline = time.monotonic() + 180

        def batches_logged() -> list[int]:
            lines = log.read_text(errors="replace").splitlines()
            return [int(m["rows"]) for line in lines if (m := BATCH_LINE.match(line))]

        while not batches_logged() and time.monotonic() < deadline:  # the first, empty batch
            time.sleep(0.5)
        # warm up: the first micro-batch with input pays for code generation, JIT and the session;
        # freshness is a steady-state figure
        warm_up_began = time.monotonic()
        warm_up = KafkaProducer(**producer_options(settings))
        for index in range(200):
            key, value = _message(settings.synthetic_seed + 2, index, "freshness-warm-up")
            warm_up.send(settings.kafka_topic, key=key, value=value)
        warm_up.close()
        while time.monotonic() < deadline and not any(rows > 0 for rows in batches_logged()):
            time.sleep(0.5)
        warm_up_seconds = time.monotonic() - warm_up_began
        producer = KafkaProducer(**{**producer_options(settings), "linger_ms": 5})
        sent, began = 0, time.monotonic()
        while time.monotonic() - began < seconds and sent < len(messages):
            due = min(len(messages), int((time.monotonic() - began) * rate))
            while sent < due:
                key, value = messages[sent]
                producer.send(settings.kafka_topic, key=key, value=value)
                sent += 1
            time.sleep(0.02)
        producer.flush()
        producer.close()
        stream.wait(timeout=300)
    peak = memory.stop()
    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        rows = session.execute(
            "SELECT batch_id, published_at, writetime(email) AS written "
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
    result = {
        "trigger": settings.stream_trigger_interval,
        "published": sent,
        "rate": round(sent / seconds),
        "measured": len(lags),
        "p50_s": round(percentile(lags, 50), 3),
        "p95_s": round(percentile(lags, 95), 3),
        "p99_s": round(percentile(lags, 99), 3),
        "max_s": round(max(lags), 3),
        "warm_up_s": round(warm_up_seconds, 1),
        "peak_rss_mib": round(peak / MIB),
        "loadavg_before": before,
        "loadavg_after": load(),
    }
    print(f"  freshness: {json.dumps(result)}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=40_000, help="the backlog")
    parser.add_argument("--batch-size", type=int, default=5_000, help="ingestion batch size")
    parser.add_argument("--master", default="local[2]", help="Spark master of the headline run")
    parser.add_argument("--max-offsets", type=int, default=40_000, help="records per micro-batch (headline)")
    parser.add_argument(
        "--sweep", default="5000,10000,20000", help="other micro-batch sizes, comma-separated ('' skips)"
    )
    parser.add_argument("--no-cores", action="store_true", help="skip the local[1] run")
    parser.add_argument(
        "--warm-passes",
        type=int,
        default=5,
        help="passes over the backlog in one JVM for the warm rate (0 skips)",
    )
    parser.add_argument("--ceiling-in-flight", type=int, default=256)
    parser.add_argument("--freshness-seconds", type=float, default=30.0)
    parser.add_argument("--freshness-trigger", default="250 milliseconds")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument(
        "--code", type=Path, help="run the streams with another checkout's src/ (a before/after comparison)"
    )
    parser.add_argument("--output", type=Path, help="also write the figures here (JSON)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's keyspace, topics and staging schema on the stack"
    )
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
            "stream_trigger_interval": "1 second",
        }
    )
    print(
        f"userstream pipeline benchmark: {args.records} records, {os.cpu_count()} cores, load {load()}, "
        f"work dir {workdir}",
        flush=True,
    )
    try:
        return measure(args, settings, suffix, workdir)
    finally:
        if not args.keep:
            drop_bench_data(settings, suffix)


def drop_bench_data(settings: Settings, suffix: str) -> None:
    """Drop what the run created on the local stack: its keyspace, topics and staging schema (the
    work dir with the logs stays)."""
    from kafka.admin import KafkaAdminClient

    from userstream.ingest.staging import Staging

    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {config.keyspace}", timeout=120)
    finally:
        cluster.shutdown()
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        ours = [topic for topic in admin.list_topics() if topic.startswith(f"bench_{suffix}")]
        if ours:
            admin.delete_topics(ours)
    finally:
        admin.close()
    with Staging(settings).connect() as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {settings.staging_schema} CASCADE")
        connection.commit()
    print(f"dropped the run's keyspace, topics and staging schema (bench_{suffix}); --keep keeps them")


def measure(args: argparse.Namespace, settings: Settings, suffix: str, workdir: Path) -> int:
    migrate(settings)
    before = load()
    code, _, ingest_peak, output = run_measured(
        [sys.executable, "-m", "userstream.cli", "-v", "ingest", "--records", str(args.records),
         "--batch-size", str(args.batch_size)],
        settings_env(settings),
        workdir / "ingest.log",
    )  # fmt: skip
    if code:
        print(output[-3000:])
        return 1
    match = re.search(r"\(([\d,]+) records/s published\)", output)
    ingestion = {
        "records_per_s": int(match[1].replace(",", "")) if match else None,
        "peak_rss_mib": round(ingest_peak / MIB),
        "loadavg_before": before,
        "loadavg_after": load(),
    }
    print(f"  ingestion: {json.dumps(ingestion)}", flush=True)

    headline = stream_run(
        settings, "headline", workdir, args.code, args.records, spark_master=args.master,
        stream_max_offsets_per_trigger=args.max_offsets,
    )  # fmt: skip
    cores = {args.master: headline}
    if not args.no_cores:
        other = "local[1]" if args.master != "local[1]" else "local[2]"
        cores[other] = stream_run(
            settings, other.replace("[", "").replace("]", ""), workdir, args.code, args.records,
            spark_master=other, stream_max_offsets_per_trigger=args.max_offsets,
        )  # fmt: skip
    sweep = {args.max_offsets: headline}
    for size in [int(s) for s in args.sweep.split(",") if s.strip()]:
        sweep[size] = stream_run(
            settings, f"batch{size}", workdir, args.code, args.records, spark_master=args.master,
            stream_max_offsets_per_trigger=size,
        )  # fmt: skip

    warm = None
    if args.warm_passes:
        warm = warm_run(
            settings, workdir, args.code, args.warm_passes, spark_master=args.master,
            stream_max_offsets_per_trigger=args.max_offsets,
        )  # fmt: skip

    ceiling = write_ceiling(settings, args.ceiling_in_flight, workdir)
    best = max([headline, *sweep.values()], key=lambda f: f["records_per_s"])
    fresh = None
    if not args.skip_freshness:
        fresh_settings = settings.model_copy(
            update={
                "kafka_topic": f"bench_{suffix}_fresh",
                "kafka_dlq_topic": f"bench_{suffix}_fresh.dlq",
                "checkpoint_location": str(workdir / "ckpt-fresh"),
                "stream_trigger_interval": args.freshness_trigger,
                "stream_max_offsets_per_trigger": None,
                "stream_starting_offsets": "latest",
                "spark_master": args.master,
            }
        )
        fresh = freshness(fresh_settings, best["records_per_s"] / 2, args.freshness_seconds, workdir)

    ratio = headline["records_per_s"] / ceiling["rows_per_s"] if ceiling["rows_per_s"] else 0.0
    warm_rate = warm["last_pass_records_per_s"] if warm else None
    warm_ratio = warm_rate / ceiling["rows_per_s"] if warm_rate and ceiling["rows_per_s"] else None
    runs = [headline, *cores.values(), *sweep.values(), *([warm] if warm else [])]
    peak_stream = max(f["peak_rss_mib"] for f in runs)
    figures = {
        "records": args.records,
        "cores": os.cpu_count(),
        "code": str(args.code) if args.code else "this checkout",
        "ingestion": ingestion,
        "stream": headline,
        "write_ceiling": ceiling,
        "stream_to_ceiling_ratio": round(ratio, 3),
        "warm": warm,
        "warm_to_ceiling_ratio": round(warm_ratio, 3) if warm_ratio is not None else None,
        "freshness": fresh,
        "peak_rss_mib_stream_tree": peak_stream,
        "cores_scaling": cores,
        "batch_size_sweep": {str(k): v for k, v in sorted(sweep.items())},
        "work_dir": str(workdir),
    }
    print(json.dumps(figures, indent=2))
    goals = [
        ("stream >= 8,000 rows/s", headline["records_per_s"] >= 8000),
        ("stream/ceiling >= 0.8", ratio >= 0.8),
        ("freshness p99 <= 1 s at half throughput", fresh is not None and fresh["p99_s"] <= 1.0),
        ("stream tree <= 1,280 MiB", peak_stream <= 1280),
    ]
    print("goals: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))
    if warm_rate:
        print(
            f"warm (pass {len(warm['passes'])} over the backlog in one JVM): {warm_rate:,} records/s, "
            f"{warm_ratio:.2f} of the ceiling"
        )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
