"""The executor-side sink of the stream: upserts into Cassandra from inside Spark executors.

It runs as ``mapPartitions`` inside ``foreachBatch`` over the batch's records as JSON text: in one
pass it counts every record by rejection reason and inserts the valid ones. Each Python worker
keeps one driver session and prepared statement per configuration, inserts with bounded
concurrency (``execute_concurrent_with_args``) and retries failed rows with backoff. An insert is
an upsert by ``id``, so a replayed micro-batch rewrites the same rows.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from userstream import contract
from userstream.storage.client import CassandraConfig, CassandraError, connect

log = logging.getLogger(__name__)


# --- executor side ------------------------------------------------------------------------------
SINK_REJECTED = "sink_rejected"  # transforms.SINK_REJECTED (not imported: no pyspark here)
_sessions: dict[CassandraConfig, tuple[Any, Any, Any]] = {}
_sessions_lock = threading.Lock()
_UUID_COLUMNS = frozenset(c.name for c in contract.table_definition().columns if c.type == "uuid")


def _session_for(config: CassandraConfig) -> tuple[Any, Any]:
    """One session and prepared insert per Python worker and configuration (reused across tasks)."""
    with _sessions_lock:
        cached = _sessions.get(config)
        if cached is None:
            cluster, session = connect(config)
            prepared = session.prepare(contract.insert_cql(config.keyspace, config.table))
            cached = (cluster, session, prepared)
            _sessions[config] = cached
        return cached[1], cached[2]


def shutdown_sessions() -> None:
    with _sessions_lock:
        for cluster, _, _ in _sessions.values():
            cluster.shutdown()
        _sessions.clear()


_COLUMN_NAMES = tuple(contract.table_definition().column_names)
_UUID_POSITIONS = tuple(i for i, name in enumerate(_COLUMN_NAMES) if name in _UUID_COLUMNS)


def record_parameters(record: dict[str, Any]) -> tuple[Any, ...]:
    """A valid sink record (``transforms.sink_records`` as JSON) as insert parameters in table
    order: uuids become ``uuid.UUID``; timestamps stay epoch milliseconds, which the driver binds."""
    values = [record.get(name) for name in _COLUMN_NAMES]
    for i in _UUID_POSITIONS:
        if values[i] is not None:
            values[i] = uuid.UUID(values[i])
    return tuple(values)


def is_deterministic(error: BaseException) -> bool:
    """Whether writing the same row again would fail the same way (so retrying is pointless).

    A value the driver cannot bind or serialize (``TypeError``/``ValueError``/``OverflowError``/
    ``struct.error``) or a statement Cassandra refuses as invalid (``InvalidRequest``) is; timeouts,
    unavailable replicas, overload and connection errors are not.
    """
    import struct

    from cassandra import InvalidRequest

    return isinstance(error, TypeError | ValueError | OverflowError | struct.error | InvalidRequest)


def describe_error(error: BaseException, limit: int = 500) -> str:
    return f"{type(error).__name__}: {error}"[:limit]


def write_rows(
    session: Any,
    prepared: Any,
    parameters: list[tuple[Any, ...]],
    concurrency: int,
    retries: int,
    rejected: list[tuple[int, BaseException]] | None = None,
) -> int:
    """Insert rows with bounded concurrency; retry the failed ones; return how many were stored.

    A row that fails for a deterministic reason (:func:`is_deterministic`) is not retried: with
    ``rejected`` it is appended there as ``(index in parameters, error)``, without it the call
    raises. Rows that still fail transiently after every retry raise :class:`CassandraError`.
    """
    from cassandra.concurrent import execute_concurrent_with_args

    pending = list(enumerate(parameters))
    refused = 0
    failed: list[tuple[tuple[int, tuple[Any, ...]], Any]] = []
    for attempt in range(retries + 1):
        results = execute_concurrent_with_args(
            session,
            prepared,
            [params for _, params in pending],
            concurrency=concurrency,
            raise_on_first_error=False,
        )
        failed = []
        for item, (ok, result) in zip(pending, results, strict=True):
            if ok:
                continue
            if isinstance(result, BaseException) and is_deterministic(result):
                if rejected is None:
                    raise CassandraError(f"Cassandra refused a row: {describe_error(result)}")
                log.warning("a row cannot be written (%s); it is dead-lettered", describe_error(result))
                rejected.append((item[0], result))
                refused += 1
                continue
            failed.append((item, result))
        if not failed:
            return len(parameters) - refused
        pending = [item for item, _ in failed]
        if attempt < retries:
            delay = min(0.2 * 2**attempt, 10.0)
            log.warning(
                "%d Cassandra writes failed (%s); retrying in %.1fs", len(pending), failed[0][1], delay
            )
            time.sleep(delay)
    raise CassandraError(
        f"{len(pending)} Cassandra writes failed after {retries + 1} attempts: {failed[0][1]}"
    )


SinkRejection = tuple[int, int, str, str]  # Kafka partition, offset, reason, detail


def record_writer(config: CassandraConfig, reason_key: str, chunk: int = 2_000) -> Any:
    """A ``mapPartitions`` function over JSON records (``transforms.sink_records``).

    In one pass over a partition it upserts the valid records (no ``reason_key``) and counts
    every record by reason; it yields one ``({reason or None: records}, rows stored, rejections)``
    triple. A valid record the sink cannot write for a deterministic reason is counted under
    ``sink_rejected`` and listed in rejections as ``(partition, offset, "sink_rejected", error)``
    for the driver to dead-letter, instead of failing the task on every replay.
    """

    def write_partition(
        records: Iterable[str],
    ) -> Iterator[tuple[dict[str | None, int], int, list[SinkRejection]]]:
        counts: dict[str | None, int] = {}
        stored = 0
        rejections: list[SinkRejection] = []
        buffer: list[tuple[Any, ...]] = []
        sources: list[tuple[int, int]] = []
        loads = json.loads

        def flush() -> int:
            refused: list[tuple[int, BaseException]] = []
            written = write_rows(*_session_for(config), buffer, config.concurrency, config.retries, refused)
            for index, error in refused:
                partition, offset = sources[index]
                rejections.append((partition, offset, SINK_REJECTED, describe_error(error)))
                counts[None] -= 1
                counts[SINK_REJECTED] = counts.get(SINK_REJECTED, 0) + 1
            buffer.clear()
            sources.clear()
            return written

        for text in records:
            record = loads(text)
            reason = record.get(reason_key)
            counts[reason] = counts.get(reason, 0) + 1
            if reason is not None:
                continue
            try:
                parameters = record_parameters(record)
            except (TypeError, ValueError) as exc:  # e.g. an id that is no UUID
                rejections.append(
                    (record["kafka_partition"], record["kafka_offset"], SINK_REJECTED, describe_error(exc))
                )
                counts[None] -= 1
                counts[SINK_REJECTED] = counts.get(SINK_REJECTED, 0) + 1
                continue
            buffer.append(parameters)
            sources.append((record["kafka_partition"], record["kafka_offset"]))
            if len(buffer) >= chunk:
                stored += flush()
        if buffer:
            stored += flush()
        yield {reason: n for reason, n in counts.items() if n}, stored, rejections

    return write_partition
