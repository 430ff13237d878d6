"""Where raw user documents come from: the randomuser.me API or the offline synthetic generator.

A source yields :class:`RawBatch` objects. Each holds documents of exactly the API's
``results[]`` shape and a deterministic batch id, so fetching the same batch again stages nothing
new.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from userstream.errors import UserstreamError
from userstream.settings import Settings


@dataclass(frozen=True)
class RawBatch:
    batch_id: str
    source: str
    documents: list[dict[str, Any]]
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Source(Protocol):
    name: str

    def batches(self, records: int, batch_size: int) -> Iterator[RawBatch]: ...


def plan_pages(records: int, batch_size: int) -> list[tuple[int, int]]:
    """(page number starting at 1, results on that page) covering ``records`` documents."""
    if records < 0 or batch_size < 1:
        raise ValueError("records must be >= 0 and batch_size >= 1")
    pages = []
    page, remaining = 1, records
    while remaining > 0:
        size = min(batch_size, remaining)
        pages.append((page, size))
        remaining -= size
        page += 1
    return pages


def build_source(settings: Settings, name: str | None = None) -> Source:
    chosen = name or settings.source
    if chosen == "synthetic":
        from userstream.ingest.sources.synthetic import SyntheticSource

        return SyntheticSource(seed=settings.synthetic_seed, broken_rate=settings.synthetic_broken_rate)
    if chosen == "randomuser":
        from userstream.ingest.sources.randomuser import RandomUserSource

        return RandomUserSource.from_settings(settings)
    raise UserstreamError(f"unknown source {chosen!r}: use synthetic or randomuser")
