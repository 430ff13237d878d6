"""PostgreSQL staging of raw documents, and the outbox the publisher drains.

Every raw document is stored as ``jsonb`` with its batch id, source, fetch time, natural key and
record id, one transaction per batch. The primary key ``(batch_id, record_id)`` makes re-staging
the same batch a no-op (``ON CONFLICT DO NOTHING``). ``published_at`` stays null until the broker
acknowledged the message (outbox pattern), so rows staged by a run that crashed before
publishing are published by the next run.

The outbox's bookkeeping per row:

* a publisher **claims** a page of pending rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` in a
  transaction it holds while Kafka acknowledges the page, so two publishers never send the same
  row; the locks die with the publisher's connection, so a crash frees its rows at once;
* ``publish_attempts``, ``last_error`` and ``last_attempt_at`` record every failed delivery;
* ``parked_at``: a row whose delivery failed ``USERSTREAM_INGEST_PUBLISH_MAX_ATTEMPTS`` times
  with an error Kafka classes as not retriable (too large, invalid record) is parked: it stays in
  the table with its error and is no longer tried (``UPDATE ... SET parked_at = NULL,
  publish_attempts = 0`` sends it again).

Text PostgreSQL cannot store (U+0000, a lone UTF-16 surrogate from a JSON ``\\ud800`` escape) is
sanitised, never dropped: see :func:`sanitise`; ``original_document`` keeps the untouched document
(ASCII-escaped JSON) and ``sanitised`` lists what changed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from userstream.contract.ids import natural_key, record_id
from userstream.errors import UserstreamError
from userstream.ingest.sources import RawBatch
from userstream.settings import Settings

log = logging.getLogger(__name__)
TABLE = "raw_users"
SCHEMA_VERSION = 2
REPLACEMENT = "\ufffd"
MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class StagedRow:
    batch_id: str
    record_id: uuid.UUID
    source: str
    fetched_at: datetime
    document: Any


@dataclass(frozen=True)
class StageResult:
    batch_id: str
    documents: int
    inserted: int
    # the same record id twice in one batch: the first is staged; identical copies and copies with
    # different content are counted apart (the ids of the latter are logged)
    duplicates: int = 0
    conflicting: int = 0
    sanitised: int = 0

    @property
    def already_staged(self) -> int:
        return self.documents - self.duplicates - self.inserted


@dataclass(frozen=True)
class Failure:
    """One row Kafka did not acknowledge: the error, and whether retrying can help."""

    batch_id: str
    record_id: uuid.UUID
    error: str
    retriable: bool


@dataclass(frozen=True)
class Parked:
    batch_id: str
    record_id: uuid.UUID
    attempts: int
    error: str


@dataclass
class Sanitised:
    """What :func:`sanitise` changed: dotted path -> description."""

    changes: dict[str, str] = field(default_factory=dict)


def _clean_text(text: str) -> tuple[str, list[str]]:
    """``text`` without U+0000 and lone surrogates (each becomes U+FFFD), and what was replaced."""
    found: list[str] = []
    if "\x00" in text:
        found.append(f"{text.count(chr(0))} x U+0000")
    surrogates = [ch for ch in text if "\ud800" <= ch <= "\udfff"]
    if surrogates:
        # a str from json.loads holds a surrogate only when it is unpaired ("\ud83d" alone): a valid
        # pair is decoded to one code point above U+FFFF
        found.append(
            f"{len(surrogates)} x lone surrogate ({', '.join(f'U+{ord(c):04X}' for c in surrogates[:3])})"
        )
    if not found:
        return text, found
    cleaned = "".join(REPLACEMENT if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return cleaned, found


def sanitise(document: Any, path: str = "") -> tuple[Any, Sanitised]:
    """A copy of ``document`` that PostgreSQL's jsonb accepts, and a record of what changed.

    jsonb refuses U+0000 (PostgreSQL 18 docs, "JSON Types": the \\u0000 escape is not accepted,
    because text cannot hold it) and a string with an unpaired surrogate is not valid UTF-8 at all.
    Each such character, in a value or a key, becomes U+FFFD; everything else is kept as it is.
    """
    record = Sanitised()

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, str):
            cleaned, found = _clean_text(value)
            if found:
                record.changes[where or "$"] = "; ".join(found) + " -> U+FFFD"
            return cleaned
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                new_key = key
                if isinstance(key, str):
                    new_key, found = _clean_text(key)
                    if found:
                        record.changes[f"{where}.{new_key}".lstrip(".") + " (key)"] = (
                            "; ".join(found) + " -> U+FFFD"
                        )
                out[new_key] = walk(item, f"{where}.{new_key}".lstrip("."))
            return out
        if isinstance(value, list):
            return [walk(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return value

    return walk(document, path), record


def _dumps(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


class Staging:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.staging_schema

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        dsn = self.settings.postgres_dsn.get_secret_value()
        try:
            connection = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise UserstreamError(
                f"cannot connect to the staging PostgreSQL ({exc}); check USERSTREAM_POSTGRES_DSN "
                "or start the local stack with `userstream local up`"
            ) from None
        try:
            yield connection
        finally:
            connection.close()

    def _table(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(TABLE))

    def migrate(self) -> None:
        """Create (or upgrade) the staging schema; safe to run concurrently and repeatedly."""
        table = self._table()
        statements = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)),
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    batch_id text NOT NULL,
                    record_id uuid NOT NULL,
                    natural_key text NOT NULL,
                    source text NOT NULL,
                    fetched_at timestamptz NOT NULL,
                    document jsonb NOT NULL,
                    staged_at timestamptz NOT NULL DEFAULT now(),
                    published_at timestamptz,
                    PRIMARY KEY (batch_id, record_id)
                )"""
            ).format(table),
            # schema version 2: the outbox's bookkeeping and the sanitising record
            *[
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(table, sql.SQL(column))
                for column in (
                    "publish_attempts integer NOT NULL DEFAULT 0",
                    "last_error text",
                    "last_attempt_at timestamptz",
                    "parked_at timestamptz",
                    "sanitised jsonb",
                    "original_document text",
                )
            ],
            sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(self.schema, f"{TABLE}_unpublished")),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} (staged_at, batch_id, record_id) "
                "WHERE published_at IS NULL AND parked_at IS NULL"
            ).format(sql.Identifier(f"{TABLE}_pending"), table),
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                table, sql.Literal(f"userstream raw staging, schema version {SCHEMA_VERSION}")
            ),
        ]
        with self.connect() as connection, connection.transaction():
            # one migration at a time (pods may start together)
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('userstream.staging.migrate'))")
            for statement in statements:
                connection.execute(statement)

    def stage(self, batch: RawBatch) -> StageResult:
        """Insert one batch in one transaction; rows already staged are left as they are."""
        rows = []
        first: dict[uuid.UUID, str] = {}
        duplicates = conflicting = sanitised_count = 0
        for document in batch.documents:
            rid = record_id(document)
            canonical = json.dumps(document, sort_keys=True, ensure_ascii=True, default=str)
            if rid in first:  # the same user twice in one page: the first is staged
                duplicates += 1
                if first[rid] != canonical:
                    conflicting += 1
                    log.warning(
                        "batch %s: record %s appears again with different content; the first copy "
                        "is staged, this one is not",
                        batch.batch_id,
                        rid,
                    )
                continue
            first[rid] = canonical
            clean, record = sanitise(document)
            changes = original = None
            if record.changes:
                sanitised_count += 1
                changes = json.dumps(record.changes, ensure_ascii=True)
                original = canonical  # ASCII-escaped: text holds it, U+0000 and surrogates included
                log.warning(
                    "batch %s: record %s sanitised for PostgreSQL: %s", batch.batch_id, rid, record.changes
                )
            rows.append(
                (
                    batch.batch_id,
                    rid,
                    _clean_text(natural_key(document))[0],  # the id is from the untouched key
                    batch.source,
                    batch.fetched_at,
                    _dumps(clean),
                    changes,
                    original,
                )
            )
        query = sql.SQL(
            "INSERT INTO {} (batch_id, record_id, natural_key, source, fetched_at, document, sanitised, "
            "original_document) VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s) "
            "ON CONFLICT (batch_id, record_id) DO NOTHING"
        ).format(self._table())
        with self.connect() as connection, connection.transaction(), connection.cursor() as cursor:
            before = self._count(cursor, batch.batch_id)
            cursor.executemany(query, rows)
            inserted = self._count(cursor, batch.batch_id) - before
        if duplicates:
            log.warning(
                "batch %s: %d duplicate record(s) in the page (%d with different content) not staged",
                batch.batch_id,
                duplicates,
                conflicting,
            )
        return StageResult(
            batch.batch_id, len(batch.documents), inserted, duplicates, conflicting, sanitised_count
        )

    def _count(self, cursor: psycopg.Cursor[Any], batch_id: str) -> int:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE batch_id = %s").format(self._table()), (batch_id,)
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def clock(self) -> datetime:
        """The database's current time (the outbox's timestamps are all the database's)."""
        with self.connect() as connection:
            row = connection.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        moment: datetime = row[0]
        return moment

    def unpublished(self, limit: int) -> list[StagedRow]:
        """The oldest staged rows not yet acknowledged by Kafka (parked ones excluded); no claim."""
        query = sql.SQL(
            "SELECT batch_id, record_id, source, fetched_at, document FROM {} "
            "WHERE published_at IS NULL AND parked_at IS NULL "
            "ORDER BY staged_at, batch_id, record_id LIMIT %s"
        ).format(self._table())
        with self.connect() as connection:
            return [StagedRow(*row) for row in connection.execute(query, (limit,)).fetchall()]

    @contextmanager
    def claim(self, limit: int, not_tried_since: datetime | None = None) -> Iterator[Claim]:
        """Claim up to ``limit`` of the oldest pending rows until the block ends.

        The rows are locked (``FOR UPDATE SKIP LOCKED``) in a transaction that commits what the
        block settled when it ends: a concurrent publisher skips them, and they are free again the
        moment this connection ends, even by a crash. ``not_tried_since`` leaves out rows whose
        last failed attempt is later (the ones this pass already tried).
        """
        query = sql.SQL(
            "SELECT batch_id, record_id, source, fetched_at, document FROM {} "
            "WHERE published_at IS NULL AND parked_at IS NULL "
            "AND (last_attempt_at IS NULL OR %s::timestamptz IS NULL OR last_attempt_at < %s::timestamptz) "
            "ORDER BY staged_at, batch_id, record_id LIMIT %s FOR UPDATE SKIP LOCKED"
        ).format(self._table())
        with self.connect() as connection, connection.transaction():
            rows = [
                StagedRow(*row)
                for row in connection.execute(query, (not_tried_since, not_tried_since, limit)).fetchall()
            ]
            yield Claim(self, connection, rows)

    def mark_published(self, keys: Sequence[tuple[str, uuid.UUID]]) -> int:
        if not keys:
            return 0
        with self.connect() as connection, connection.transaction():
            return self._mark_published(connection, keys)

    def _mark_published(
        self, connection: psycopg.Connection[Any], keys: Sequence[tuple[str, uuid.UUID]]
    ) -> int:
        if not keys:
            return 0
        query = sql.SQL(
            "UPDATE {} AS t SET published_at = now(), last_error = NULL "
            "FROM unnest(%s::text[], %s::uuid[]) AS k(batch_id, record_id) "
            "WHERE t.batch_id = k.batch_id AND t.record_id = k.record_id AND t.published_at IS NULL"
        ).format(self._table())
        cursor = connection.execute(query, ([k[0] for k in keys], [k[1] for k in keys]))
        return cursor.rowcount

    def _record_failures(
        self, connection: psycopg.Connection[Any], failures: Sequence[Failure], max_attempts: int
    ) -> list[Parked]:
        """Count a failed attempt of each row; park those at the limit with a permanent error."""
        if not failures:
            return []
        query = sql.SQL(
            "UPDATE {} AS t SET publish_attempts = t.publish_attempts + 1, last_error = k.error, "
            "last_attempt_at = clock_timestamp(), "
            "parked_at = CASE WHEN NOT k.retriable AND t.publish_attempts + 1 >= %s "
            "THEN clock_timestamp() END "
            "FROM unnest(%s::text[], %s::uuid[], %s::text[], %s::boolean[]) "
            "AS k(batch_id, record_id, error, retriable) "
            "WHERE t.batch_id = k.batch_id AND t.record_id = k.record_id AND t.published_at IS NULL "
            "RETURNING t.batch_id, t.record_id, t.publish_attempts, t.last_error, t.parked_at"
        ).format(self._table())
        rows = connection.execute(
            query,
            (
                max_attempts,
                [f.batch_id for f in failures],
                [f.record_id for f in failures],
                [f.error[:MAX_ERROR_CHARS] for f in failures],
                [f.retriable for f in failures],
            ),
        ).fetchall()
        return [Parked(row[0], row[1], int(row[2]), row[3]) for row in rows if row[4] is not None]

    def parked(self, limit: int = 20) -> tuple[int, list[Parked]]:
        """How many rows are parked, and the most recently parked ones."""
        with self.connect() as connection:
            total = connection.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE parked_at IS NOT NULL").format(self._table())
            ).fetchone()
            rows = connection.execute(
                sql.SQL(
                    "SELECT batch_id, record_id, publish_attempts, last_error FROM {} "
                    "WHERE parked_at IS NOT NULL ORDER BY parked_at DESC LIMIT %s"
                ).format(self._table()),
                (limit,),
            ).fetchall()
        return (int(total[0]) if total else 0), [Parked(r[0], r[1], int(r[2]), r[3] or "") for r in rows]

    def record_ids(self, batch_ids: Iterable[str]) -> set[uuid.UUID]:
        query = sql.SQL("SELECT DISTINCT record_id FROM {} WHERE batch_id = ANY(%s)").format(self._table())
        with self.connect() as connection:
            return {row[0] for row in connection.execute(query, (list(batch_ids),)).fetchall()}

    def counts(self) -> dict[str, int]:
        query = sql.SQL(
            "SELECT count(*), count(published_at), count(DISTINCT record_id), count(parked_at), "
            "count(sanitised) FROM {}"
        ).format(self._table())
        with self.connect() as connection:
            row = connection.execute(query).fetchone()
        assert row is not None
        return {
            "staged": int(row[0]),
            "published": int(row[1]),
            "distinct_ids": int(row[2]),
            "parked": int(row[3]),
            "sanitised": int(row[4]),
        }


class Claim:
    """Rows one publisher holds (see :meth:`Staging.claim`); settle them before the block ends."""

    def __init__(self, staging: Staging, connection: psycopg.Connection[Any], rows: list[StagedRow]) -> None:
        self.staging = staging
        self.connection = connection
        self.rows = rows

    def settle(
        self, acknowledged: Sequence[tuple[str, uuid.UUID]], failures: Sequence[Failure], max_attempts: int
    ) -> list[Parked]:
        """Mark the acknowledged rows published and record the failures; returns the rows parked now."""
        self.staging._mark_published(self.connection, acknowledged)
        return self.staging._record_failures(self.connection, failures, max_attempts)
