"""Freshness check of the rows the stream writes to Cassandra.

Run inside the ingestion image by the ``users_stream_health`` DAG (the image carries this file at
``/opt/userstream/checks/freshness.py``)::

    python /opt/userstream/checks/freshness.py --max-age-minutes 30

It reads the usual ``USERSTREAM_CASSANDRA_*`` settings, finds the newest ``processed_at`` in the
table and exits 0 when it is recent enough, 1 with a message saying how stale the table is and
what to look at otherwise. ``max(processed_at)`` scans the table: fine for a health check every
few minutes on this pipeline's tables, and bounded by a request timeout.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

EXIT_STALE = 1
EXIT_ERROR = 2


def judge(newest: datetime | None, now: datetime, max_age: timedelta, table: str) -> tuple[bool, str]:
    """Decide whether ``newest`` is fresh; return (fresh, one-line message)."""
    if newest is None:
        return False, (
            f"{table} has no rows: the stream has not written anything yet. "
            "Check the SparkApplication (kubectl get sparkapplication) and run the users_ingest DAG."
        )
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    age = now - newest
    if age > max_age:
        return False, (
            f"{table} is stale: newest row processed at {newest.isoformat()}, "
            f"{int(age.total_seconds() // 60)} min ago (limit {int(max_age.total_seconds() // 60)} min). "
            "Check the SparkApplication's driver log and whether users_ingest ran recently."
        )
    return (
        True,
        f"{table} is fresh: newest row processed at {newest.isoformat()} ({int(age.total_seconds())} s ago)",
    )


def newest_processed_at(timeout_s: float) -> tuple[datetime | None, str]:
    """Query Cassandra with the userstream settings; return (newest processed_at, table name)."""
    from userstream.settings import load_settings
    from userstream.storage.client import CassandraConfig, connect

    settings = load_settings()
    table = f"{settings.cassandra_keyspace}.{settings.cassandra_table}"
    cluster, session = connect(CassandraConfig.from_settings(settings))
    try:
        row = session.execute(f"SELECT max(processed_at) AS newest FROM {table}", timeout=timeout_s).one()  # noqa: S608 - names validated by Settings
        return (row.newest if row else None), table
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fail when the stream has written no recent rows.")
    # the DAG passes USERSTREAM_DAG_FRESHNESS_MAX_AGE_MINUTES (the pod has no USERSTREAM_DAG_* settings)
    parser.add_argument("--max-age-minutes", type=int, required=True)
    parser.add_argument("--timeout-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        newest, table = newest_processed_at(args.timeout_seconds)
    except Exception as exc:
        print(f"freshness check could not query Cassandra: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    fresh, message = judge(newest, datetime.now(UTC), timedelta(minutes=args.max_age_minutes), table)
    print(message, file=sys.stdout if fresh else sys.stderr)
    return 0 if fresh else EXIT_STALE


if __name__ == "__main__":
    sys.exit(main())
