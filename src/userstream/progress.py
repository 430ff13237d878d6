"""What a progress line says: rate, time left and the line itself (pure: no clock, no terminal).

The commands hand a :class:`Snapshot` ("records done so far") to :mod:`userstream.cli.console`,
which decides when and where to draw it; everything here is arithmetic on the snapshot and the
time it is drawn at.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """Where one stage (ingest, stream) stands.

    ``started`` is the stage's start on the clock the caller draws with (``time.monotonic()``);
    ``total`` the records the stage is expected to handle, when known; ``lag`` the records still
    waiting for it (the stream's unprocessed offsets), when known; ``note`` what it is doing now.
    """

    stage: str
    done: int
    started: float
    total: int | None = None
    lag: int | None = None
    note: str = ""


def lag(targets: dict[int, int], reached: dict[int, int]) -> int:
    """Records between the offsets reached per partition and the target offsets."""
    return sum(max(end - reached.get(partition, 0), 0) for partition, end in targets.items())


def rate(done: int, elapsed: float) -> float:
    """Records per second (0 before any time has passed)."""
    return done / elapsed if elapsed > 0 else 0.0


def remaining(snapshot: Snapshot) -> int | None:
    """Records still to handle: the lag when known, else what is left of the total."""
    if snapshot.lag is not None:
        return max(snapshot.lag, 0)
    if snapshot.total is not None:
        return max(snapshot.total - snapshot.done, 0)
    return None


def eta(snapshot: Snapshot, now: float) -> float | None:
    """Seconds until the stage is done at its rate so far (None when unknown)."""
    left = remaining(snapshot)
    speed = rate(snapshot.done, now - snapshot.started)
    if left is None:
        return None
    if left == 0:
        return 0.0
    return left / speed if speed > 0 else None


def duration(seconds: float) -> str:
    """``m:ss`` below an hour, else ``h:mm:ss``."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render(snapshot: Snapshot, now: float, width: int | None = None) -> str:
    """One line, e.g. ``stream  1,000/2,000 records  140/s  lag 1,000  0:07 elapsed  ~0:07 left``.

    ``width``: cut the line to the terminal's width (a live line must not wrap).
    """
    elapsed = now - snapshot.started
    done = f"{snapshot.done:,}" if snapshot.total is None else f"{snapshot.done:,}/{snapshot.total:,}"
    parts = [f"{snapshot.stage:<6}", f"{done} records", f"{rate(snapshot.done, elapsed):,.0f}/s"]
    if snapshot.lag is not None:
        parts.append(f"lag {max(snapshot.lag, 0):,}")
    parts.append(f"{duration(elapsed)} elapsed")
    left = eta(snapshot, now)
    if left is not None and left > 0:
        parts.append(f"~{duration(left)} left")
    if snapshot.note:
        parts.append(snapshot.note)
    line = "  ".join(parts)
    if width is not None and len(line) > width:
        line = line[: max(width - 1, 0)]
    return line


def due(last: float | None, now: float, interval: float) -> bool:
    """Whether a periodic (not live) progress line is due: the first one, then one per interval."""
    return last is None or now - last >= interval
