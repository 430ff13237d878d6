"""Crash recovery: a crash between staging and publishing (the stream killed with SIGKILL at random
points: test_faults.py)."""

from __future__ import annotations

import uuid

from pipeline_support import isolated, table_ids

from userstream.contract.ids import record_id
from userstream.ingest.run import ingest
from userstream.ingest.sources.synthetic import SyntheticSource, generate
from userstream.storage.migration import migrate
from userstream.stream.runner import caught_up, run_stream, topic_end_offsets


def _expected(settings, n: int) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    valid, broken = set(), set()
    for index in range(n):
        document, kind = generate(settings.synthetic_seed, index, settings.synthetic_broken_rate)
        (broken if kind else valid).add(record_id(document))
    return valid, broken


def test_a_crash_between_staging_and_publishing_is_repaired(stack_settings, unique_names, tmp_path, spark):
    settings = isolated(stack_settings, unique_names, tmp_path)
    migrate(settings)
    source = SyntheticSource(seed=settings.synthetic_seed, broken_rate=settings.synthetic_broken_rate)
    n = 400
    staged = ingest(settings, source=source, records=n, batch_size=100, publish=False)
    assert staged.staged_new == n
    assert staged.published == 0

    repaired = ingest(settings, source=source, records=n, batch_size=100)
    assert repaired.staged_new == 0
    assert repaired.repaired == n
    assert repaired.published == n
    assert sum(topic_end_offsets(settings).values()) == n
    # once: a third run finds nothing staged and unpublished, and sends nothing
    third = ingest(settings, source=source, records=n, batch_size=100)
    assert (third.staged_new, third.repaired, third.published, third.publish_failed) == (0, 0, 0, 0)
    assert sum(topic_end_offsets(settings).values()) == n

    targets = topic_end_offsets(settings)
    run_stream(settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=300)
    valid, _ = _expected(settings, n)
    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid)
