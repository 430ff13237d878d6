"""The ingestion process: fetch -> stage in PostgreSQL -> publish to Kafka (outbox).

It first publishes whatever an earlier run staged but could not publish, then, batch by batch,
stages a fetched batch in one transaction and publishes the staged rows. Running it twice with
the same source parameters stages and publishes nothing new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from userstream.ingest.publishing import Publisher, ensure_topics
from userstream.ingest.sources import RawBatch, Source, build_source
from userstream.ingest.staging import StageResult, Staging
from userstream.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    source: str
    requested: int
    fetched: int = 0
    staged_new: int = 0
    already_staged: int = 0
    published: int = 0
    repaired: int = 0
    batch_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    publish_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"source            {self.source}",
            f"requested         {self.requested}",
            f"fetched           {self.fetched} in {len(self.batch_ids)} batch(es)",
            f"staged (new)      {self.staged_new}",
            f"already staged    {self.already_staged}",
            f"published         {self.published} (of which {self.repaired} left over by an earlier run)",
            f"wall time         {self.seconds:.2f} s ({self.rate:,.0f} records/s published)",
        ]


def ingest(
    settings: Settings,
    *,
    source: Source | None = None,
    records: int | None = None,
    batch_size: int | None = None,
    publish: bool = True,
    echo: Callable[[str], None] | None = None,
    on_batch: Callable[[IngestSummary], None] | None = None,
) -> IngestSummary:
    """Fetch ``records`` documents in batches, stage each batch, publish; returns a summary.

    ``publish=False`` stops after staging (what a crash between the two steps leaves behind).
    ``on_batch`` sees the summary so far after each batch (a progress line).
    """
    chosen = source or build_source(settings)
    total = records if records is not None else settings.ingest_records
    size = batch_size or settings.ingest_batch_size
    summary = IngestSummary(source=chosen.name, requested=total)
    began = time.monotonic()
    staging = Staging(settings)
    staging.migrate()
    say = echo or (lambda line: log.info("%s", line))

    def stage(batch: RawBatch) -> StageResult:
        result = staging.stage(batch)
        summary.batch_ids.append(batch.batch_id)
        summary.fetched += result.documents
        summary.staged_new += result.inserted
        summary.already_staged += len(batch.documents) - result.inserted
        return result

    if not publish:
        for batch in chosen.batches(total, size):
            stage(batch)
            if on_batch is not None:
                on_batch(summary)
        summary.seconds = time.monotonic() - began
        return summary
    # only the topic it writes: its principal may not see (nor create) the dead-letter topic
    ensure_topics(settings, [settings.kafka_topic])
    with Publisher(settings, staging) as publisher:
        leftover = publisher.publish_pending()
        summary.repaired = summary.published = leftover.published
        if leftover.published:
            say(f"published {leftover.published} staged record(s) left unpublished by an earlier run")
        for batch in chosen.batches(total, size):
            result = stage(batch)
            published = publisher.publish_pending()
            summary.published += published.published
            summary.publish_seconds += published.seconds
            elapsed = time.monotonic() - began
            say(
                f"batch {batch.batch_id}: fetched {result.documents}, staged {result.inserted} new, "
                f"published {published.published} | total {summary.fetched}/{total} "
                f"({summary.fetched / elapsed if elapsed else 0:,.0f} records/s)"
            )
            if on_batch is not None:
                on_batch(summary)
    summary.seconds = time.monotonic() - began
    return summary
