"""Is the stream keeping up? The health check's decision, from offsets only (pure, no I/O).

The stream commits, after each micro-batch, the batch's end offsets to its progress consumer group
(:mod:`userstream.stream.progress_commit`). The health check reads per partition of the topic: the
log start and end offsets, the group's committed offset and the first offset published at or after
``now - max_wait`` (Kafka's ListOffsets by timestamp), and :func:`judge` decides:

* lag (records published and not yet processed) <= ``max_lag``: healthy, however long ago the last
  batch ran: an idle pipeline (no ingestion for days) is a healthy one;
* lag > ``max_lag`` and every waiting record was published less than ``max_wait`` ago: healthy, the
  stream is catching up (an ingestion run just published);
* lag > ``max_lag`` and some waiting record is older than ``max_wait``: unhealthy, the stream is
  stuck, dead or far too slow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition of the topic as the check sees it."""

    partition: int
    start: int  # log start offset (the oldest record retention kept)
    end: int  # log end offset (the offset the next record gets)
    committed: int | None  # the next offset the stream reads (None: it never committed one)
    # first offset published at or after now - max_wait; None: no record is that recent
    recent_from: int | None

    @property
    def read_from(self) -> int:
        """Where the stream stands: its committed offset, or the log start when it has none
        (or when retention deleted records it never read)."""
        return self.start if self.committed is None else max(self.committed, self.start)

    @property
    def lag(self) -> int:
        return max(0, self.end - self.read_from)

    @property
    def overdue(self) -> int:
        """Records waiting for the stream that were published more than max_wait ago."""
        recent = self.end if self.recent_from is None else min(self.recent_from, self.end)
        return max(0, recent - self.read_from)


@dataclass(frozen=True)
class Progress:
    """What the stream wrote with its last commit (the offset commit's metadata)."""

    batch_id: int
    committed_at: datetime


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    lag: int
    overdue: int
    message: str


def progress_metadata(batch_id: int, committed_at: datetime) -> str:
    """The metadata string of a progress commit (Kafka keeps it with the offset)."""
    return json.dumps(
        {"batch": batch_id, "at": committed_at.astimezone(UTC).isoformat(timespec="seconds")},
        separators=(",", ":"),
    )


def parse_progress(metadata: str | None) -> Progress | None:
    """The :class:`Progress` of a commit's metadata; None when it is not one of ours."""
    if not metadata:
        return None
    try:
        data = json.loads(metadata)
        at = datetime.fromisoformat(data["at"])
        return Progress(int(data["batch"]), at if at.tzinfo else at.replace(tzinfo=UTC))
    except (ValueError, KeyError, TypeError):
        return None


def _ago(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def judge(
    topic: str,
    group: str,
    partitions: list[PartitionOffsets],
    progress: Progress | None,
    now: datetime,
    max_wait: timedelta,
    max_lag: int = 0,
) -> Verdict:
    """Decide whether the stream keeps up with ``topic``; see the module's docstring."""
    lag = sum(p.lag for p in partitions)
    overdue = sum(p.overdue for p in partitions)
    last = (
        f"last batch {progress.batch_id} committed {_ago(progress.committed_at, now)} "
        f"({progress.committed_at.isoformat(timespec='seconds')})"
        if progress
        else f"no progress committed to group {group} yet"
    )
    minutes = int(max_wait.total_seconds() // 60)
    if not partitions:
        return Verdict(False, 0, 0, f"topic {topic} has no partitions: does it exist?")
    if lag <= max_lag:
        return Verdict(True, lag, 0, f"{topic}: the stream is caught up (lag {lag}); {last}")
    if overdue == 0:
        return Verdict(
            True,
            lag,
            0,
            f"{topic}: the stream is catching up: lag {lag}, every waiting record published less "
            f"than {minutes} min ago; {last}",
        )
    behind = ", ".join(
        f"{p.partition}: {p.lag} ({p.overdue} overdue)"
        for p in sorted(partitions, key=lambda p: p.partition)
        if p.lag
    )
    return Verdict(
        False,
        lag,
        overdue,
        f"{topic}: the stream is not keeping up: lag {lag}, of which {overdue} records were published "
        f"more than {minutes} min ago and are still unprocessed (per partition: {behind}); {last}. "
        "Check the SparkApplication (kubectl get sparkapplication) and its driver log.",
    )
