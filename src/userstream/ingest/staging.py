"""PostgreSQL staging of raw documents, and the outbox the publisher drains.

Every raw document is stored as ``jsonb`` with its batch id, source, fetch time, natural key and
record id, one transaction per batch. The primary key ``(batch_id, record_id)`` makes re-staging
the same batch a no-op (``ON CONFLICT DO NOTHING``). ``published_at`` stays null until the broker
acknowledged the message (outbox pattern), so rows staged by a run that crashed before
publishing are published by the next run.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
SCHEMA_VERSION = 1


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


def _dumps(document: Any) -> str:
    # jsonb cannot hold NUL characters; keep them escaped the same way everywhere
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
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} (staged_at, batch_id, record_id) "
                "WHERE published_at IS NULL"
            ).format(sql.Identifier(f"{TABLE}_unpublished"), table),
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
        seen: set[uuid.UUID] = set()
        for document in batch.documents:
            rid = record_id(document)
            if rid in seen:  # the same user twice in one page: keep the first
                continue
            seen.add(rid)
            rows.append(
                (batch.batch_id, rid, natural_key(document), batch.source, batch.fetched_at, _dumps(document))
            )
        query = sql.SQL(
            "INSERT INTO {} (batch_id, record_id, natural_key, source, fetched_at, document) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (batch_id, record_id) DO NOTHING"
        ).format(self._table())
        with self.connect() as connection, connection.transaction(), connection.cursor() as cursor:
            before = self._count(cursor, batch.batch_id)
            cursor.executemany(query, rows)
            inserted = self._count(cursor, batch.batch_id) - before
        return StageResult(batch.batch_id, len(batch.documents), inserted)

    def _count(self, cursor: psycopg.Cursor[Any], batch_id: str) -> int:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE batch_id = %s").format(self._table()), (batch_id,)
        )
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def unpublished(self, limit: int) -> list[StagedRow]:
        """The oldest staged rows not yet acknowledged by Kafka."""
        query = sql.SQL(
            "SELECT batch_id, record_id, source, fetched_at, document FROM {} "
            "WHERE published_at IS NULL ORDER BY staged_at, batch_id, record_id LIMIT %s"
        ).format(self._table())
        with self.connect() as connection:
            return [StagedRow(*row) for row in connection.execute(query, (limit,)).fetchall()]

    def mark_published(self, keys: Sequence[tuple[str, uuid.UUID]]) -> int:
        if not keys:
            return 0
        query = sql.SQL(
            "UPDATE {} AS t SET published_at = now() "
            "FROM unnest(%s::text[], %s::uuid[]) AS k(batch_id, record_id) "
            "WHERE t.batch_id = k.batch_id AND t.record_id = k.record_id AND t.published_at IS NULL"
        ).format(self._table())
        with self.connect() as connection, connection.transaction():
            cursor = connection.execute(query, ([k[0] for k in keys], [k[1] for k in keys]))
            return cursor.rowcount

    def record_ids(self, batch_ids: Iterable[str]) -> set[uuid.UUID]:
        query = sql.SQL("SELECT DISTINCT record_id FROM {} WHERE batch_id = ANY(%s)").format(self._table())
        with self.connect() as connection:
            return {row[0] for row in connection.execute(query, (list(batch_ids),)).fetchall()}

    def counts(self) -> dict[str, int]:
        query = sql.SQL("SELECT count(*), count(published_at), count(DISTINCT record_id) FROM {}").format(
            self._table()
        )
        with self.connect() as connection:
            row = connection.execute(query).fetchone()
        assert row is not None
        return {"staged": int(row[0]), "published": int(row[1]), "distinct_ids": int(row[2])}
