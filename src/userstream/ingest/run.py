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

from userstream.ingest.publishing import Publisher, PublishError, PublishResult, ensure_topics
from userstream.ingest.sources import RawBatch, Source, build_source
from userstream.ingest.staging import Failure, Parked, StageResult, Staging
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
    # the same record id twice in one fetched page (the first is staged), of which with other content
    duplicates: int = 0
    conflicting_duplicates: int = 0
    # documents with text PostgreSQL cannot store (U+0000, lone surrogates), staged sanitised
    sanitised: int = 0
    # deliveries Kafka refused or did not acknowledge in this run (each row tried once per run)
    publish_failed: int = 0
    # rows parked in this run, and every parked row of the staging table
    parked: list[Parked] = field(default_factory=list)
    parked_total: int = 0
    failures: list[Failure] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    publish_seconds: float = 0.0

    @property
    def unpublished_failures(self) -> int:
        """Rows that failed in this run and stay pending (not parked): a later run retries them."""
        return self.publish_failed - len(self.parked)

    def add(self, result: PublishResult) -> None:
        self.published += result.published
        self.publish_seconds += result.seconds
        self.publish_failed += result.failed
        self.parked += result.parked
        self.failures += result.failures[: max(0, 10 - len(self.failures))]

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
            f"duplicates        {self.duplicates} in the same page, not staged again "
            f"({self.conflicting_duplicates} with different content)",
            f"sanitised         {self.sanitised} (U+0000 or lone surrogates replaced; originals kept)",
            f"published         {self.published} (of which {self.repaired} left over by an earlier run)",
            f"publish failures  {self.publish_failed} in this run ({self.unpublished_failures} stay pending)",
            f"parked            {len(self.parked)} in this run, {self.parked_total} in staging "
            "(not sent again: see the ingestion log)",
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
        summary.already_staged += result.already_staged
        summary.duplicates += result.duplicates
        summary.conflicting_duplicates += result.conflicting
        summary.sanitised += result.sanitised
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
        try:
            leftover = publisher.publish_pending()
            summary.add(leftover)
            summary.repaired = leftover.published
            if leftover.published:
                say(f"published {leftover.published} staged record(s) left unpublished by an earlier run")
            for batch in chosen.batches(total, size):
                result = stage(batch)
                published = publisher.publish_pending()
                summary.add(published)
                elapsed = time.monotonic() - began
                say(
                    f"batch {batch.batch_id}: fetched {result.documents}, staged {result.inserted} new, "
                    f"published {published.published} | total {summary.fetched}/{total} "
                    f"({summary.fetched / elapsed if elapsed else 0:,.0f} records/s)"
                )
                if on_batch is not None:
                    on_batch(summary)
        finally:
            summary.seconds = time.monotonic() - began
    summary.parked_total = staging.parked(0)[0]
    if summary.parked:
        say(
            f"{len(summary.parked)} staged record(s) parked in this run after repeated failures "
            f"({summary.parked_total} parked in all); first: {summary.parked[0].record_id}: "
            f"{summary.parked[0].error}"
        )
    if summary.unpublished_failures > 0:
        for line in summary.lines():
            say(line)
        first = summary.failures[0] if summary.failures else None
        raise PublishError(
            f"Kafka did not acknowledge {summary.unpublished_failures} message(s) in this run"
            + (f" (first: {first.record_id}: {first.error})" if first else "")
            + "; they stay staged and unpublished: run the ingestion again once the cause is fixed"
        )
    return summary
