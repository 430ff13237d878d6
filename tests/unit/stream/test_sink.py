"""The Java sink's options and the bounded stream totals (no Spark started)."""

from __future__ import annotations

from userstream.settings import load_settings
from userstream.storage.client import CassandraConfig
from userstream.stream.runner import BatchStats, StreamTotals
from userstream.stream.sink import writer_options


def test_writes_default_to_local_quorum_idempotent_upserts_with_a_ten_minute_deadline() -> None:
    options = writer_options(CassandraConfig.from_settings(load_settings()))
    assert options["consistency"] == "LOCAL_QUORUM"
    assert int(options["retry_deadline_ms"]) >= 600_000
    assert int(options["max_in_flight"]) >= 1


def test_the_writer_gets_the_configured_consistency_deadline_and_in_flight_requests() -> None:
    settings = load_settings(
        cassandra_write_consistency="each_quorum",
        cassandra_retry_deadline_seconds=900,
        cassandra_write_concurrency=32,
        cassandra_username="writer",
        cassandra_password="secret",
    )
    options = writer_options(CassandraConfig.from_settings(settings))
    assert options["consistency"] == "EACH_QUORUM"
    assert options["retry_deadline_ms"] == "900000"
    assert options["max_in_flight"] == "32"
    assert (options["username"], options["password"]) == ("writer", "secret")


def _stats(batch_id: int, rows: int, finished_at: float) -> BatchStats:
    return BatchStats(batch_id, rows, rows - 1 if rows else 0, 1 if rows else 0, 2.0, {}, finished_at)


def test_stream_totals_keep_exact_sums_but_only_a_bounded_window_of_batches() -> None:
    totals = StreamTotals(window=50)
    for batch_id in range(10_000):
        totals.add(_stats(batch_id, 10 if batch_id % 2 else 0, 100.0 + batch_id))
    assert totals.batch_count == 10_000
    assert len(totals.recent) == 50  # memory does not grow with the number of batches
    assert [s.batch_id for s in totals.recent] == list(range(9_950, 10_000))
    assert (totals.rows_in, totals.stored, totals.dead_lettered) == (50_000, 45_000, 5_000)
    assert totals.rows_in == totals.stored + totals.dead_lettered
    # busy: from the start of the first batch with input (batch 1: ended 101, took 2 s) to the end
    # of the last one (batch 9999)
    assert totals.busy_seconds() == (100.0 + 9_999) - (101.0 - 2.0)
    assert totals.last_activity() == 100.0 + 9_999


def test_empty_batches_are_not_activity() -> None:
    totals = StreamTotals()
    totals.add(_stats(0, 0, 5.0))
    assert totals.busy_seconds() == 0.0
    assert totals.last_activity() is None
