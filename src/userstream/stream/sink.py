"""The stream's Cassandra sink: a Java writer on the executors, called once per micro-batch.

The rows never leave the JVM. ``foreachBatch`` (Python, on the driver) hands the batch's sink frame
(:func:`userstream.stream.transforms.sink_frame`: Kafka partition and offset, rejection reason,
then the table's columns) to ``dev.userstream.cassandra.CassandraSink.write`` through py4j. That
class (``spark-apps/cassandra-writer``, built from source into its own jar) runs one task per
partition on the executors: each counts every record by reason and upserts the valid ones with the
Cassandra Java driver's asynchronous API, at most ``cassandra_write_concurrency`` requests in
flight, at ``cassandra_write_consistency``, every insert marked idempotent. A transient failure
(Cassandra restarting, a timeout, an unavailable replica) is retried with capped exponential
backoff until ``cassandra_retry_deadline_seconds``; past that the batch fails (the query stops, the
process exits non-zero, a restart resumes from the checkpoint). A row the driver or Cassandra
refuses for a deterministic reason is reported back, with its Kafka partition and offset, as
``sink_rejected`` and dead-lettered, never retried forever.

An insert is an upsert by ``id`` (derived from the source), so a replayed micro-batch rewrites the
same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from userstream.errors import UserstreamError
from userstream.storage.client import CassandraConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SINK_REJECTED = "sink_rejected"  # transforms.SINK_REJECTED (not imported: no pyspark here)
WRITER_CLASS = "dev.userstream.cassandra.CassandraSink"


class SinkError(UserstreamError):
    """The Java writer is missing, or a micro-batch's counts do not add up."""


def writer_options(config: CassandraConfig) -> dict[str, str]:
    """The Java writer's options (``WriterConfig`` in spark-apps/cassandra-writer), as strings."""
    return {
        "contact_points": ",".join(config.contact_points),
        "port": str(config.port),
        "local_dc": config.local_dc,
        "keyspace": config.keyspace,
        "table": config.table,
        "username": config.username or "",
        "password": config.password or "",
        "consistency": config.write_consistency,
        "max_in_flight": str(config.concurrency),
        "retry_deadline_ms": str(round(config.retry_deadline_seconds * 1000)),
        "request_timeout_ms": "10000",
        "backoff_initial_ms": "200",
        "backoff_max_ms": "10000",
    }


@dataclass(frozen=True)
class SinkResult:
    """What one micro-batch's write did: every record counted, the rejected ones by source."""

    rows_in: int
    stored: int
    reasons: dict[str, int]
    # partition, offset, reason, detail (transforms.SINK_REJECTION_SCHEMA); None when none
    rejections: DataFrame | None

    @property
    def dead_lettered(self) -> int:
        return sum(self.reasons.values())


class JvmSink:
    """The py4j handle of the Java writer for one SparkSession and configuration."""

    def __init__(self, spark: SparkSession, config: CassandraConfig) -> None:
        from py4j.java_gateway import JavaClass

        jvm: Any = spark._jvm  # type: ignore[attr-defined]
        self.spark = spark
        self.writer = jvm
        for part in WRITER_CLASS.split("."):
            self.writer = getattr(self.writer, part)
        if not isinstance(self.writer, JavaClass):
            raise SinkError(
                f"the Cassandra writer ({WRITER_CLASS}) is not on Spark's classpath: run "
                "`userstream local fetch` (or `make artifacts`), which builds it from "
                "spark-apps/cassandra-writer, or use the Spark image, which has it"
            )
        self.options = jvm.java.util.HashMap()
        for key, value in writer_options(config).items():
            self.options.put(key, value)

    def write(
        self, frame: DataFrame, processing_time: float, processing_time_columns: list[str]
    ) -> SinkResult:
        """Write one micro-batch's sink frame; ``processing_time`` (epoch seconds) is bound to
        ``processing_time_columns`` of every row."""
        from pyspark.sql import DataFrame

        jvm: Any = self.spark._jvm  # type: ignore[attr-defined]
        options = jvm.java.util.HashMap(self.options)
        options.put("processing_time_ms", str(round(processing_time * 1000)))
        options.put("processing_time_columns", ",".join(processing_time_columns))
        result = self.writer.write(frame._jdf, options, SINK_REJECTED)
        rows_in, stored = int(result.rowsIn()), int(result.stored())
        reasons = {str(reason): int(n) for reason, n in result.reasons().items()}
        dead = sum(reasons.values())
        if rows_in != stored + dead or dead != int(result.rejectedCount()):
            raise SinkError(
                f"the Cassandra writer's counts do not add up: {rows_in} in, {stored} stored, "
                f"{dead} rejected ({reasons}), {int(result.rejectedCount())} rejections reported"
            )
        rejections = DataFrame(result.rejections(), self.spark) if dead else None
        return SinkResult(rows_in, stored, reasons, rejections)
