"""Crash recovery: a crash between staging and publishing, and the stream killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

from pipeline_support import isolated, table_ids, wait_for

from userstream.contract.ids import record_id
from userstream.ingest.run import ingest
from userstream.ingest.sources.synthetic import SyntheticSource, generate
from userstream.local.run import dead_letter_reasons
from userstream.settings import settings_env
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


def test_the_stream_killed_mid_stream_resumes_from_its_checkpoint(stack_settings, unique_names, tmp_path):
    n = 2000
    settings = isolated(
        stack_settings, unique_names, tmp_path, stream_max_offsets_per_trigger=150, synthetic_broken_rate=0.02
    )
    migrate(settings)
    ingest(
        settings, source=SyntheticSource(settings.synthetic_seed, settings.synthetic_broken_rate), records=n
    )
    valid, broken = _expected(settings, n)
    env = settings_env(settings)
    command = [sys.executable, "-m", "userstream.cli", "stream", "--no-migrate"]
    log_path = tmp_path / "stream-1.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen(
            [*command, "--max-seconds", "600"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: len(table_ids(settings)) >= 300, 240, "the first rows in Cassandra", interval=0.3
            )
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the driver and its JVM, no clean shutdown
            first.wait(30)
    stored_at_kill = len(table_ids(settings))
    assert first.returncode == -signal.SIGKILL
    assert stored_at_kill < len(valid), "killed too late to test anything: lower the batch size"

    with open(tmp_path / "stream-2.log", "wb") as log:
        second = subprocess.run(
            [*command, "--until-idle", "8", "--max-seconds", "400"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    output = (tmp_path / "stream-2.log").read_text(errors="replace")
    assert second.returncode == 0, output[-3000:]
    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid), output[-2000:]
    assert set(ids) == valid
    assert {uuid.UUID(key) for key in dead_letter_reasons(settings)} == broken
    # the restart resumed: it did not read the topic again from the start
    assert "stream stopped" in output
    resumed_rows = int(output.rsplit("rows in ", 1)[1].split(",")[0])
    assert resumed_rows < n
