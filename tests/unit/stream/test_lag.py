"""The health check's verdict from offsets: idle is healthy, catching up is healthy, stuck is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from userstream.stream.lag import (
    PartitionOffsets,
    Progress,
    Verdict,
    judge,
    parse_progress,
    progress_metadata,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WAIT = timedelta(minutes=30)
LONG_AGO = Progress(41, NOW - timedelta(days=3))


def verdict(
    partitions: list[PartitionOffsets], progress: Progress | None = LONG_AGO, max_lag: int = 0
) -> Verdict:
    return judge("users", "grp", partitions, progress, NOW, WAIT, max_lag)


def test_an_idle_caught_up_stream_is_healthy_however_old_its_last_batch() -> None:
    v = verdict([PartitionOffsets(0, 0, 100, 100, None), PartitionOffsets(1, 10, 50, 50, None)])
    assert v.healthy
    assert v.lag == 0
    assert "caught up" in v.message
    assert "last batch 41 committed 72 h ago" in v.message


def test_an_empty_topic_without_any_commit_is_healthy() -> None:
    v = verdict([PartitionOffsets(0, 0, 0, None, None)], progress=None)
    assert v.healthy
    assert v.lag == 0
    assert "no progress committed to group grp" in v.message


def test_recent_records_waiting_mean_catching_up() -> None:
    # 20 records published, all within the last 30 min (the first recent offset is the committed one)
    v = verdict([PartitionOffsets(0, 0, 120, 100, 100)])
    assert v.healthy
    assert v.lag == 20
    assert v.overdue == 0
    assert "catching up" in v.message


def test_records_waiting_longer_than_the_limit_are_unhealthy() -> None:
    # offsets 100..109 were published before now - 30 min and are still unprocessed
    v = verdict([PartitionOffsets(0, 0, 120, 100, 110), PartitionOffsets(1, 0, 5, 5, None)])
    assert not v.healthy
    assert (v.lag, v.overdue) == (20, 10)
    assert "not keeping up" in v.message
    assert "0: 20 (10 overdue)" in v.message


def test_no_record_recent_means_every_waiting_record_is_overdue() -> None:
    v = verdict([PartitionOffsets(0, 0, 120, 100, None)])
    assert not v.healthy
    assert v.overdue == 20


def test_a_stream_that_never_committed_is_judged_from_the_log_start() -> None:
    v = verdict([PartitionOffsets(0, 30, 80, None, None)], progress=None)
    assert not v.healthy
    assert (v.lag, v.overdue) == (50, 50)
    assert "no progress committed" in v.message


def test_records_retention_deleted_do_not_count() -> None:
    # committed 10, but the log starts at 60 now: only 60..79 can still be read
    v = verdict([PartitionOffsets(0, 60, 80, 10, None)])
    assert (v.lag, v.overdue) == (20, 20)


def test_a_lag_within_max_lag_counts_as_caught_up() -> None:
    assert verdict([PartitionOffsets(0, 0, 103, 100, None)], max_lag=3).healthy
    assert not verdict([PartitionOffsets(0, 0, 104, 100, None)], max_lag=3).healthy


def test_a_topic_without_partitions_is_unhealthy() -> None:
    v = verdict([])
    assert not v.healthy
    assert "no partitions" in v.message


def test_progress_metadata_round_trips() -> None:
    at = datetime(2026, 11, 22, 11, 59, 58, tzinfo=UTC)
    assert parse_progress(progress_metadata(7, at)) == Progress(7, at)


@pytest.mark.parametrize(
    "metadata", [None, "", "not json", '{"batch": 1}', '{"batch": "x", "at": "2026-01-01"}', "[]"]
)
def test_foreign_metadata_is_no_progress(metadata: str | None) -> None:
    assert parse_progress(metadata) is None
