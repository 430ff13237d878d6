"""The sink's handling of rows Cassandra cannot take: deterministic errors are reported, not retried."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from cassandra import InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout

from userstream.storage.client import CassandraConfig, CassandraError
from userstream.stream import sink
from userstream.stream.sink import is_deterministic, write_rows

CONFIG = CassandraConfig(("127.0.0.1",), 9042, "dc1", "ks", "t", retries=3)


class FakeCluster:
    """Stands in for ``execute_concurrent_with_args``: fails the rows ``fail(row, attempt)`` says."""

    def __init__(self, fail: Any) -> None:
        self.fail = fail
        self.calls: list[list[tuple[Any, ...]]] = []
        self.written: list[tuple[Any, ...]] = []

    def execute(self, session: Any, prepared: Any, rows: list[Any], **_: Any) -> list[tuple[bool, Any]]:
        attempt = len(self.calls)
        self.calls.append(list(rows))
        results: list[tuple[bool, Any]] = []
        for row in rows:
            error = self.fail(row, attempt)
            if error is None:
                self.written.append(row)
            results.append((error is None, error))
        return results


@pytest.fixture
def fake(monkeypatch):
    def install(fail: Any) -> FakeCluster:
        cluster = FakeCluster(fail)
        monkeypatch.setattr("cassandra.concurrent.execute_concurrent_with_args", cluster.execute)
        monkeypatch.setattr(sink.time, "sleep", lambda _: None)
        monkeypatch.setattr(sink, "_session_for", lambda config: (None, None))
        return cluster

    return install


@pytest.mark.parametrize(
    "error",
    [
        TypeError('Received an argument of invalid type for column "latitude"'),
        ValueError("bad value"),
        OverflowError("int too large"),
        struct.error("required argument is not a float"),
        InvalidRequest("Invalid unset value"),
    ],
)
def test_deterministic_errors_are_rejected_without_a_retry(fake, error) -> None:
    cluster = fake(lambda row, attempt: error if row == ("poison",) else None)
    rejected: list[tuple[int, BaseException]] = []
    stored = write_rows(None, None, [("a",), ("poison",), ("b",)], 8, 3, rejected)
    assert stored == 2
    assert rejected == [(1, error)]
    assert len(cluster.calls) == 1
    with pytest.raises(CassandraError, match="refused a row"):  # a caller that cannot dead-letter
        write_rows(None, None, [("poison",)], 8, 3)


@pytest.mark.parametrize(
    "error",
    [OperationTimedOut("timed out"), Unavailable("not enough replicas"), WriteTimeout("slow", write_type=0)],
)
def test_transient_errors_are_retried(fake, error) -> None:
    assert not is_deterministic(error)
    cluster = fake(lambda row, attempt: error if row == ("slow",) and attempt < 2 else None)
    rejected: list[tuple[int, BaseException]] = []
    assert write_rows(None, None, [("a",), ("slow",)], 8, 3, rejected) == 2
    assert rejected == []
    assert [len(rows) for rows in cluster.calls] == [2, 1, 1]
    fake(lambda row, attempt: error)
    with pytest.raises(CassandraError, match="after 4 attempts"):
        write_rows(None, None, [("a",)], 8, 3, rejected)


def _record(index: int, latitude: Any = 1.5, reason: str | None = None) -> str:
    if reason:
        return json.dumps({"dlq_reason": reason})
    return json.dumps(
        {
            "dlq_reason": None,
            "id": f"00000000-0000-4000-8000-{index:012d}",
            "latitude": latitude,
            "kafka_partition": index % 2,
            "kafka_offset": 100 + index,
        }
    )


def test_the_record_writer_reports_refused_rows_with_their_source_and_counts_them(fake) -> None:
    def fail(row: tuple[Any, ...], attempt: int) -> BaseException | None:
        return TypeError("cannot bind 'NaN' to double") if "NaN" in row else None

    fake(fail)
    records = [_record(0), _record(1, "NaN"), _record(2, reason="malformed_json"), _record(3)]
    [(counts, stored, rejections)] = list(sink.record_writer(CONFIG, "dlq_reason", chunk=2)(iter(records)))
    assert counts == {None: 2, "sink_rejected": 1, "malformed_json": 1}
    assert stored == 2
    assert rejections == [(1, 101, "sink_rejected", "TypeError: cannot bind 'NaN' to double")]


def test_a_record_that_cannot_become_parameters_is_reported_too(fake) -> None:
    fake(lambda row, attempt: None)
    broken = json.dumps({"dlq_reason": None, "id": "not-a-uuid", "kafka_partition": 0, "kafka_offset": 7})
    [(counts, stored, rejections)] = list(
        sink.record_writer(CONFIG, "dlq_reason")(iter([broken, _record(1)]))
    )
    assert counts == {None: 1, "sink_rejected": 1}
    assert stored == 1
    assert rejections[0][:3] == (0, 7, "sink_rejected")
