"""The progress line's arithmetic and text (userstream.progress: no clock, no terminal)."""

from __future__ import annotations

import pytest

from userstream.progress import Snapshot, due, duration, eta, lag, rate, remaining, render


def test_rate_is_records_per_second_and_zero_before_any_time() -> None:
    assert rate(500, 2.0) == 250.0
    assert rate(500, 0.0) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (7.9, "0:07"), (61, "1:01"), (3600, "1:00:00"), (-3, "0:00")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_lag_counts_what_is_left_per_partition_never_negative() -> None:
    assert lag({0: 100, 1: 50}, {0: 40}) == 110
    assert lag({0: 100}, {0: 120}) == 0


def test_remaining_prefers_the_lag_over_the_total() -> None:
    assert remaining(Snapshot("stream", 10, 0.0, total=100, lag=30)) == 30
    assert remaining(Snapshot("ingest", 10, 0.0, total=100)) == 90
    assert remaining(Snapshot("stream", 10, 0.0)) is None


def test_eta_at_the_rate_so_far() -> None:
    assert eta(Snapshot("ingest", 250, 0.0, total=1000), now=5.0) == pytest.approx(15.0)
    assert eta(Snapshot("ingest", 0, 0.0, total=1000), now=5.0) is None  # no rate yet
    assert eta(Snapshot("ingest", 1000, 0.0, total=1000), now=5.0) == 0.0
    assert eta(Snapshot("stream", 5, 0.0), now=5.0) is None  # nothing known to be left


def test_render_says_done_rate_lag_elapsed_and_time_left() -> None:
    line = render(Snapshot("stream", 1000, 100.0, total=2000, lag=1000, note="micro-batch running"), 110.0)
    assert line == (
        "stream  1,000/2,000 records  100/s  lag 1,000  0:10 elapsed  ~0:10 left  micro-batch running"
    )


def test_render_without_total_or_lag_and_when_done() -> None:
    assert render(Snapshot("ingest", 20, 0.0), 4.0) == "ingest  20 records  5/s  0:04 elapsed"
    assert render(Snapshot("ingest", 20, 0.0, total=20), 4.0) == "ingest  20/20 records  5/s  0:04 elapsed"


def test_render_fits_the_terminal_width() -> None:
    line = render(Snapshot("stream", 1, 0.0, total=2, note="x" * 200), 1.0, width=40)
    assert len(line) == 39  # one column left for the cursor: the line never wraps


def test_plain_lines_are_due_first_then_once_per_interval() -> None:
    assert due(None, 0.0, 10.0)
    assert not due(100.0, 105.0, 10.0)
    assert due(100.0, 110.0, 10.0)
