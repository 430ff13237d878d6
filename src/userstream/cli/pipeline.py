"""Data-path commands: ``ingest``, ``cassandra migrate``, ``stream`` and ``run``."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import re
import time
from typing import TYPE_CHECKING

from userstream.cli.console import Console
from userstream.errors import UserstreamError
from userstream.local.credentials import client_settings
from userstream.progress import Snapshot, lag
from userstream.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql.streaming.query import StreamingQuery


def _quiet_clients() -> None:
    for name in ("kafka", "cassandra", "py4j"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _console(args: argparse.Namespace) -> Console:
    console = Console(log_file=args.log_file, json_output=args.json)
    if args.log_file is not None:
        console.echo(f"details (libraries, Spark): {args.log_file}; `userstream -v` prints them here")
    return console


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ingest = subparsers.add_parser(
        "ingest", help="fetch users, stage them in PostgreSQL and publish them to Kafka"
    )
    ingest.add_argument("--source", choices=["synthetic", "randomuser"], help="default: USERSTREAM_SOURCE")
    ingest.add_argument("--records", type=_positive, help="default: USERSTREAM_INGEST_RECORDS")
    ingest.add_argument(
        "--batch-size", type=_positive, help="default: USERSTREAM_INGEST_BATCH_SIZE (max 5000)"
    )
    ingest.add_argument(
        "--seed",
        help="which users: an integer, or any text (e.g. an Airflow run id) turned into one; the same seed "
        "gives the same users, so a retry fetches exactly what the first try fetched "
        "(default: USERSTREAM_SYNTHETIC_SEED / USERSTREAM_RANDOMUSER_SEED)",
    )
    ingest.add_argument(
        "--stage-only",
        action="store_true",
        help="stop after staging (leaves what a crash before publishing leaves; the next run publishes it)",
    )
    ingest.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ingest.set_defaults(func=_ingest)

    cassandra = subparsers.add_parser("cassandra", help="Cassandra schema")
    cassandra_commands = cassandra.add_subparsers(dest="cassandra_command", metavar="COMMAND", required=True)
    migrate = cassandra_commands.add_parser(
        "migrate",
        help="create the keyspace (configured replication), the table and the client roles; idempotent",
        description="Roles: USERSTREAM_CASSANDRA_{WRITER,READER}_ROLE and _PASSWORD (both or neither).",
    )
    migrate.add_argument(
        "--wait-seconds",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry connecting this long while Cassandra does not accept CQL yet (default: no wait)",
    )
    migrate.set_defaults(func=_migrate)

    stream = subparsers.add_parser(
        "stream", help="run the streaming app (Kafka -> Cassandra), forever by default"
    )
    stream.add_argument(
        "--until-idle", type=_seconds, metavar="SECONDS", help="stop after this long without input"
    )
    stream.add_argument("--max-seconds", type=_seconds, metavar="SECONDS", help="stop after this long")
    stream.add_argument("--no-migrate", action="store_true", help="do not create the Cassandra table first")
    stream.add_argument("--json", action="store_true", help="print the totals as one JSON object")
    stream.set_defaults(func=_stream)

    run = subparsers.add_parser(
        "run", help="migrate, ingest N synthetic users, stream until processed, reconcile the counts"
    )
    run.add_argument("--records", type=_positive, default=10_000, help="users to ingest (default 10000)")
    run.add_argument("--batch-size", type=_positive, help="default: USERSTREAM_INGEST_BATCH_SIZE")
    run.add_argument("--timeout", type=_seconds, default=900.0, help="longest the stream may take (s)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.set_defaults(func=_run)


def seed_number(seed: str) -> int:
    """An integer seed for the synthetic source: the integer itself, or a stable digest of the text."""
    text = seed.strip()
    if not text:
        raise UserstreamError("--seed is empty: give an integer or a text such as the DAG run id")
    if re.fullmatch(r"-?\d{1,18}", text):
        return int(text)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:6], "big")


def with_seed(settings: Settings, seed: str) -> Settings:
    """Settings whose sources draw the users of ``seed`` (both sources: only one is used)."""
    return settings.model_copy(update={"synthetic_seed": seed_number(seed), "randomuser_seed": seed.strip()})


def _ingest(args: argparse.Namespace) -> int:
    from userstream.ingest.run import ingest
    from userstream.ingest.sources import build_source

    settings = client_settings(load_settings(), "ingest")
    if args.seed is not None:
        settings = with_seed(settings, args.seed)
    _quiet_clients()
    console = _console(args)
    began = time.monotonic()
    with console.stage():
        summary = ingest(
            settings,
            source=build_source(settings, args.source),
            records=args.records,
            batch_size=args.batch_size,
            publish=not args.stage_only,
            on_batch=lambda done: console.progress(
                Snapshot("ingest", done.fetched, began, total=done.requested)
            ),
        )
    console.result(
        {**dataclasses.asdict(summary), "records_per_second": round(summary.rate, 1)},
        ["ingest summary:", *(f"  {line}" for line in summary.lines())],
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from userstream.storage.migration import migrate, roles_from_env

    settings = client_settings(load_settings(), "admin")
    roles = roles_from_env()
    _quiet_clients()
    for statement in migrate(settings, roles=roles, wait_seconds=max(args.wait_seconds, 0.0)):
        print(f"{statement};")
    print(f"Cassandra {settings.cassandra_keyspace}.{settings.cassandra_table} is up to date")
    return 0


def _stream(args: argparse.Namespace) -> int:
    from userstream.storage.migration import migrate
    from userstream.stream.runner import APP_NAME, StreamTotals, run_stream
    from userstream.stream.spark_session import build_spark_session

    settings = load_settings()
    _quiet_clients()
    console = _console(args)
    if not args.no_migrate:
        migrate(client_settings(settings, "admin"))
    stream_settings = client_settings(settings, "stream")
    began = time.monotonic()
    totals = StreamTotals()
    with console.stage():
        console.progress(Snapshot("stream", 0, began, note="starting Spark"))
        spark = build_spark_session(stream_settings, APP_NAME, output=args.log_file)

        def draw(query: StreamingQuery) -> bool:
            """Checked after every poll of the query: draws the progress line, never stops it."""
            console.progress(Snapshot("stream", totals.rows_in, began, lag=offsets_behind(query)))
            return False

        run_stream(
            stream_settings,
            spark=spark,
            until_idle=args.until_idle,
            max_seconds=args.max_seconds,
            totals=totals,
            stop_when=draw,
        )
    console.result(
        {
            "micro_batches": totals.batch_count,
            "rows_in": totals.rows_in,
            "stored": totals.stored,
            "dead_lettered": totals.dead_lettered,
        },
        [
            f"stream stopped: {totals.batch_count} micro-batches, rows in {totals.rows_in}, "
            f"stored {totals.stored}, dead-lettered {totals.dead_lettered}"
        ],
    )
    return 0


def offsets_behind(query: StreamingQuery) -> int | None:
    """Records the stream had not read yet at its last micro-batch (from the query's progress)."""
    from userstream.stream.runner import committed_offsets

    latest, done = committed_offsets(query, "latestOffset"), committed_offsets(query)
    if latest is None or done is None:
        return None
    return lag(latest, done)


def _run(args: argparse.Namespace) -> int:
    from userstream.local.run import run_pipeline

    settings = load_settings()
    _quiet_clients()
    console = _console(args)
    with console.stage():
        summary = run_pipeline(
            settings,
            args.records,
            batch_size=args.batch_size,
            timeout_s=args.timeout,
            echo=console.echo,
            progress=console.progress,
            spark_output=args.log_file,
        )
    console.result(summary.as_dict(), summary.lines())
    return 0 if summary.reconciliation.ok else 1
