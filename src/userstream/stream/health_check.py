"""The stream's health check: lag of the stream's progress group behind the topic, and how long the
oldest unprocessed record has waited (the decision: :func:`userstream.stream.lag.judge`).

Run by the ``users_stream_health`` DAG in a pod of the ingestion image::

    python -m userstream.stream.health_check

It reads the usual ``USERSTREAM_*`` settings (Kafka as the least-privilege ``health`` principal of
charts/userstream/files/access.yaml: Describe on the topic and on the progress group) and exits 0
(healthy), 1 (unhealthy, with a message saying what is behind) or 2 (Kafka could not be asked).

Only offsets are read, never a record: ListOffsets (log start, log end, and by timestamp) needs
Describe on the topic, OffsetFetch of the group needs Describe on the group and the topic
(Kafka's request ACLs, docs "Authorization and ACLs"). The cost does not grow with the data.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from userstream.settings import Settings
from userstream.stream.lag import PartitionOffsets, Progress, Verdict, judge, parse_progress

EXIT_UNHEALTHY = 1
EXIT_ERROR = 2
TIMEOUT_MS = 30_000


def read_offsets(
    settings: Settings, now: datetime, max_wait: timedelta
) -> tuple[list[PartitionOffsets], Progress | None]:
    """The topic's partitions with the progress group's commits, and the newest commit's progress."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.stream_progress_group,  # only read: never subscribes, joins nor commits
        enable_auto_commit=False,
        client_id="userstream-health",
        request_timeout_ms=TIMEOUT_MS,
        **settings.kafka_client_options(),
    )
    try:
        topic = settings.kafka_topic
        numbers = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(numbers)]
        if not tps:
            return [], None
        starts = consumer.beginning_offsets(tps, timeout_ms=TIMEOUT_MS)
        ends = consumer.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        since_ms = int((now - max_wait).timestamp() * 1000)
        recent: dict[Any, Any] = consumer.offsets_for_times(
            {tp: since_ms for tp in tps}, timeout_ms=TIMEOUT_MS
        )
        partitions = []
        newest: Progress | None = None
        for tp in tps:
            commit = consumer.committed(tp, metadata=True, timeout_ms=TIMEOUT_MS)
            found = recent.get(tp)
            partitions.append(
                PartitionOffsets(
                    tp.partition,
                    int(starts[tp]),
                    int(ends[tp]),
                    None if commit is None else int(commit.offset),
                    None if found is None else int(found.offset),
                )
            )
            progress = parse_progress(commit.metadata if commit is not None else None)
            if progress and (newest is None or progress.committed_at > newest.committed_at):
                newest = progress
        return partitions, newest
    finally:
        consumer.close(autocommit=False)


def check(settings: Settings, now: datetime | None = None) -> Verdict:
    now = now or datetime.now(UTC)
    max_wait = timedelta(minutes=settings.health_max_wait_minutes)
    partitions, progress = read_offsets(settings, now, max_wait)
    return judge(
        settings.kafka_topic,
        settings.stream_progress_group,
        partitions,
        progress,
        now,
        max_wait,
        settings.health_max_lag,
    )


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description="Fail when the stream leaves records unprocessed for longer than "
        "USERSTREAM_HEALTH_MAX_WAIT_MINUTES (an idle stream is healthy)."
    ).parse_args(argv)
    from userstream.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERROR
    try:
        verdict = check(settings)
    except Exception as exc:
        print(
            f"health check could not read the offsets from Kafka: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(verdict.message, file=sys.stdout if verdict.healthy else sys.stderr)
    return 0 if verdict.healthy else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
