"""Data-path commands: ``ingest``, ``cassandra migrate``, ``stream`` and ``run``."""

from __future__ import annotations

import argparse
import hashlib
import logging
import re

from userstream.errors import UserstreamError
from userstream.local.credentials import client_settings
from userstream.settings import Settings, load_settings


def _quiet_clients() -> None:
    for name in ("kafka", "cassandra", "py4j"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
    stream.set_defaults(func=_stream)

    run = subparsers.add_parser(
        "run", help="migrate, ingest N synthetic users, stream until processed, reconcile the counts"
    )
    run.add_argument("--records", type=_positive, default=10_000, help="users to ingest (default 10000)")
    run.add_argument("--batch-size", type=_positive, help="default: USERSTREAM_INGEST_BATCH_SIZE")
    run.add_argument("--timeout", type=_seconds, default=900.0, help="longest the stream may take (s)")
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
    summary = ingest(
        settings,
        source=build_source(settings, args.source),
        records=args.records,
        batch_size=args.batch_size,
        publish=not args.stage_only,
        echo=print,
    )
    print("ingest summary:")
    for line in summary.lines():
        print(f"  {line}")
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
    from userstream.stream.runner import run_stream

    settings = load_settings()
    _quiet_clients()
    if not args.no_migrate:
        migrate(client_settings(settings, "admin"))
    totals = run_stream(
        client_settings(settings, "stream"), until_idle=args.until_idle, max_seconds=args.max_seconds
    )
    print(
        f"stream stopped: {len(totals.batches)} micro-batches, rows in {totals.rows_in}, "
        f"stored {totals.stored}, dead-lettered {totals.dead_lettered}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from userstream.local.run import run_pipeline

    settings = load_settings()
    _quiet_clients()
    summary = run_pipeline(settings, args.records, batch_size=args.batch_size, timeout_s=args.timeout)
    for line in summary.lines():
        print(line)
    return 0 if summary.reconciliation.ok else 1
