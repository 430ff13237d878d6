"""``userstream local ...``: fetch, up, down, status, logs, smoke, and the cql, sql and topic shells."""

from __future__ import annotations

import argparse
import sys
import time

from userstream.errors import UserstreamError
from userstream.local import processes
from userstream.local.credentials import Client, client_settings
from userstream.local.stack import COMPONENT_NAMES, LocalStack, format_status
from userstream.settings import load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = subparsers.add_parser(
        "local",
        help="the local stack: Kafka, Cassandra and PostgreSQL as processes on this machine",
        description="Run Kafka (KRaft), Cassandra and PostgreSQL as local processes from registry "
        "artifacts. Data, logs and pid files live in USERSTREAM_STATE_DIR (default ./.local-stack), "
        "jars in USERSTREAM_CACHE_DIR (default ./.cache).",
    )
    commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    fetch = commands.add_parser(
        "fetch", help="resolve the Kafka, Cassandra and Spark connector jars (cached)"
    )
    fetch.add_argument("--force", action="store_true", help="resolve again even if the cache is current")
    fetch.set_defaults(func=cmd_fetch)

    up = commands.add_parser("up", help="start what is not running and wait until everything answers")
    up.add_argument("components", nargs="*", metavar="COMPONENT", help="default: all")
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop the servers this stack started")
    down.add_argument("components", nargs="*", metavar="COMPONENT", help="default: all")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="show each server; exit 1 unless all are healthy")
    status.set_defaults(func=cmd_status)

    logs = commands.add_parser("logs", help="print the end of a server's log")
    logs.add_argument("component", choices=COMPONENT_NAMES)
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)

    smoke = commands.add_parser("smoke", help="a real round trip through Kafka, PostgreSQL, Cassandra, Spark")
    smoke.set_defaults(func=cmd_smoke)

    cql = commands.add_parser(
        "cql", help="a CQL shell on the local Cassandra (the driver's; the jars have no cqlsh)"
    )
    cql.add_argument("-e", "--execute", metavar="STATEMENTS", help="run these ';'-separated statements")
    cql.add_argument(
        "--as",
        dest="principal",
        choices=sorted(CQL_CLIENTS),
        default="admin",
        help="log in as the stack's admin (default), the stream's writer or the checks' reader role",
    )
    cql.set_defaults(func=cmd_cql)

    sql = commands.add_parser("sql", help="psql on the staging database (USERSTREAM_POSTGRES_DSN)")
    sql.add_argument("-e", "--execute", metavar="COMMAND", help="run this command and exit")
    sql.set_defaults(func=cmd_sql)

    topic = commands.add_parser(
        "topic", help="print a topic's messages with partition, offset, key and headers (e.g. dead letters)"
    )
    topic.add_argument(
        "topic", nargs="?", default="main", help="a topic name, or main / dlq for the configured ones"
    )
    topic.add_argument(
        "--from-beginning", action="store_true", help="from the oldest message (default: new ones only)"
    )
    topic.add_argument("--max", type=int, metavar="N", help="stop after N messages")
    topic.add_argument(
        "--follow", action="store_true", help="with --from-beginning: keep waiting for new messages"
    )
    topic.add_argument(
        "--max-value", type=int, default=500, metavar="CHARS", help="cut values longer than this (0: never)"
    )
    topic.set_defaults(func=cmd_topic)


def _components(args: argparse.Namespace) -> tuple[str, ...]:
    chosen: list[str] = list(getattr(args, "components", None) or [])
    unknown = [c for c in chosen if c not in COMPONENT_NAMES]
    if unknown:
        raise UserstreamError(
            f"unknown component {', '.join(unknown)}: choose from {', '.join(COMPONENT_NAMES)}"
        )
    return tuple(chosen) if chosen else COMPONENT_NAMES


def cmd_fetch(args: argparse.Namespace) -> int:
    stack = LocalStack(load_settings())
    folders = stack.fetch(force=args.force)
    for name, folder in folders.items():
        print(f"{name:<12} {len(list(folder.glob('*.jar'))):>4} jars  {folder}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    stack = LocalStack(load_settings())
    began = time.monotonic()
    statuses = stack.up(_components(args))
    print(f"\nlocal stack up in {time.monotonic() - began:.1f} s (state in {stack.state_dir})")
    print(format_status(statuses))
    return 0 if all(s.healthy for s in statuses) else 1


def cmd_down(args: argparse.Namespace) -> int:
    stack = LocalStack(load_settings())
    for name, outcome in stack.down(_components(args)).items():
        print(f"{name:<12} {outcome}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    stack = LocalStack(load_settings())
    statuses = stack.status()
    print(format_status(statuses))
    if all(s.healthy for s in statuses):
        return 0
    not_healthy = ", ".join(f"{s.name} is {s.state}" for s in statuses if not s.healthy)
    print(f"\nnot healthy: {not_healthy}; `userstream local up` starts what is stopped", file=sys.stderr)
    return 1


def cmd_logs(args: argparse.Namespace) -> int:
    stack = LocalStack(load_settings())
    log_file = stack.component(args.component).log_file
    if not log_file.exists():
        print(f"no log yet at {log_file}: `userstream local up` starts {args.component}", file=sys.stderr)
        return 1
    print(processes.tail(log_file, args.lines))
    if not args.follow:
        return 0
    with open(log_file, "rb") as handle:
        handle.seek(0, 2)
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
            else:
                time.sleep(0.5)


def cmd_smoke(args: argparse.Namespace) -> int:
    from userstream.local.smoke import run_smoke

    settings = load_settings()
    stack = LocalStack(settings)
    not_healthy = [s for s in stack.status() if not s.healthy]
    if not_healthy:
        names = ", ".join(f"{s.name} ({s.state})" for s in not_healthy)
        print(
            f"userstream: the local stack is not healthy: {names}; run `userstream local up`", file=sys.stderr
        )
        return 1
    run_smoke(client_settings(settings, "admin"))
    return 0


# the roles `userstream local cql --as` offers: the local client whose Cassandra login each is
CQL_CLIENTS: dict[str, Client] = {"admin": "admin", "writer": "stream", "reader": "checks"}


def cmd_cql(args: argparse.Namespace) -> int:
    from userstream.local.tools import cql_shell

    settings = client_settings(load_settings(), CQL_CLIENTS[args.principal])
    return cql_shell(settings, execute=args.execute, stdin=sys.stdin, out=sys.stdout)


def cmd_sql(args: argparse.Namespace) -> int:
    from userstream.local.tools import sql_shell

    return sql_shell(load_settings(), execute=args.execute)


def cmd_topic(args: argparse.Namespace) -> int:
    from userstream.local.tools import read_topic

    if args.max is not None and args.max < 1:
        raise UserstreamError("--max must be at least 1")
    return read_topic(
        client_settings(load_settings(), "admin"),
        args.topic,
        from_beginning=args.from_beginning,
        max_messages=args.max,
        follow=args.follow,
        max_value=args.max_value or None,
    )
