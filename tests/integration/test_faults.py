"""Fault injection on the real stack: the Kafka broker restarted under the ingestion and under the
stream's dead-letter writes, and the streaming process killed with SIGKILL three times.

Every case checks the same things: every record in is stored or dead-lettered (in = stored +
dead-lettered, by record id), no valid record is lost, the table holds no duplicate, every dead
letter has a reason, and the stream runs on (or resumes by itself) afterwards. Each case prints its
counts (``pytest -s`` shows them). The broker is stopped and started with the local stack's own
controls (:meth:`LocalStack.down` / :meth:`LocalStack.up`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

from pipeline_support import isolated, table_ids, wait_for

from userstream.contract.ids import record_id
from userstream.ingest.publishing import PublishError
from userstream.ingest.run import ingest
from userstream.ingest.sources.synthetic import SyntheticSource, generate
from userstream.ingest.staging import Staging
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


def _restart_kafka(local_stack) -> float:
    """Stop the broker and start it again; returns how long it was away (seconds)."""
    began = time.monotonic()
    local_stack.down(["kafka"])
    local_stack.up(["kafka"])
    return time.monotonic() - began


def _check_outcome(settings, valid: set[uuid.UUID], broken: set[uuid.UUID], case: str) -> dict[str, Any]:
    ids = table_ids(settings)
    letters = dead_letter_reasons(settings)
    dead = {uuid.UUID(key) for key in letters}
    counts = {
        "case": case,
        "in": len(valid) + len(broken),
        "stored": len(set(ids)),
        "rows": len(ids),
        "dead_lettered": len(dead),
        "reasons": dict(Counter(headers.get("dlq.reason", "") for headers in letters.values())),
    }
    print(f"\nfault case counts: {counts}")
    assert len(ids) == len(set(ids)), "duplicate rows in the table"
    assert set(ids) == valid, f"lost {len(valid - set(ids))} valid record(s)"
    assert dead == broken
    assert counts["in"] == counts["stored"] + counts["dead_lettered"]
    assert all(headers.get("dlq.reason") for headers in letters.values()), "a dead letter without a reason"
    return counts


def test_kafka_restarted_while_ingesting_then_a_rerun_publishes_exactly_the_rest(
    local_stack, stack_settings, unique_names, tmp_path, spark
):
    n = 3000
    settings = isolated(stack_settings, unique_names, tmp_path, synthetic_broken_rate=0.03)
    migrate(settings)
    source = SyntheticSource(settings.synthetic_seed, settings.synthetic_broken_rate)
    staging = Staging(settings)
    staging.migrate()
    outcome: dict[str, Any] = {}

    def first_run() -> None:
        try:
            outcome["summary"] = ingest(settings, source=source, records=n, batch_size=100)
        except PublishError as exc:  # the clear message of a run the outage ended
            outcome["error"] = str(exc)

    runner = threading.Thread(target=first_run)
    runner.start()
    wait_for(lambda: staging.counts()["published"] > 0, 120, "the first published batch", interval=0.1)
    away = _restart_kafka(local_stack)
    runner.join(600)
    assert not runner.is_alive()
    first = staging.counts()
    published_before_rerun = first["published"]
    rerun = ingest(settings, source=source, records=n, batch_size=100)
    after = staging.counts()
    print(
        f"\nkafka away {away:.1f}s; first run: {outcome.get('error') or 'completed'}; staged "
        f"{first['staged']}, published {published_before_rerun}; re-run staged {rerun.staged_new} new, "
        f"published {rerun.published}"
    )
    # the re-run published exactly the rows the first run had not, and staged only what it had not
    assert rerun.published == n - published_before_rerun
    assert rerun.staged_new == n - first["staged"]
    assert (after["staged"], after["published"], after["parked"]) == (n, n, 0)
    on_topic = sum(topic_end_offsets(settings).values())
    assert on_topic >= n  # an acknowledgement lost in the outage may send a row twice, never zero times

    targets = topic_end_offsets(settings)
    run_stream(settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=400)
    valid, broken = _expected(settings, n)
    _check_outcome(
        settings, valid, broken, f"kafka restart during ingestion ({on_topic} messages on the topic)"
    )


def test_kafka_restarted_while_the_stream_writes_dead_letters(
    local_stack, stack_settings, unique_names, tmp_path, spark
):
    n = 1500
    settings = isolated(
        stack_settings, unique_names, tmp_path, synthetic_broken_rate=0.3, stream_max_offsets_per_trigger=100
    )
    migrate(settings)
    ingest(
        settings, source=SyntheticSource(settings.synthetic_seed, settings.synthetic_broken_rate), records=n
    )
    targets = topic_end_offsets(settings)
    result: dict[str, Any] = {}

    def stream() -> None:
        try:
            result["totals"] = run_stream(
                settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=600
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    runner = threading.Thread(target=stream)
    runner.start()
    wait_for(lambda: len(table_ids(settings)) > 0, 240, "the first rows in Cassandra", interval=0.2)
    away = _restart_kafka(local_stack)
    back = time.time()
    runner.join(700)
    assert not runner.is_alive()
    assert "error" not in result, f"the stream did not survive the broker restart: {result.get('error')}"
    totals = result["totals"]
    print(
        f"\nkafka away {away:.1f}s; stream: rows in {totals.rows_in}, stored {totals.stored}, "
        f"dead-lettered {totals.dead_lettered} (replays included)"
    )
    # the restart fell in the middle of the stream's work: batches with input completed after it
    assert any(b.rows_in and b.finished_at > back for b in totals.recent), "the stream was done before"
    valid, broken = _expected(settings, n)
    assert broken
    _check_outcome(settings, valid, broken, "kafka restart while the stream dead-letters")


def test_the_stream_killed_three_times_at_random_points_loses_nothing(stack_settings, unique_names, tmp_path):
    n = 2000
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    settings = isolated(
        stack_settings, unique_names, tmp_path, stream_max_offsets_per_trigger=150, synthetic_broken_rate=0.05
    )
    migrate(settings)
    ingest(
        settings, source=SyntheticSource(settings.synthetic_seed, settings.synthetic_broken_rate), records=n
    )
    valid, broken = _expected(settings, n)
    env = settings_env(settings)
    command = [sys.executable, "-m", "userstream.cli", "stream", "--no-migrate"]
    # three kill points: the stored-row counts after which each run is killed, then a random delay
    thresholds = sorted(rng.sample(range(len(valid) // 10, len(valid) * 8 // 10), 3))
    kills = []
    for attempt, threshold in enumerate(thresholds, start=1):
        delay = rng.uniform(0, 2)
        with open(tmp_path / f"stream-{attempt}.log", "wb") as log:
            process = subprocess.Popen(
                [*command, "--max-seconds", "600"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_for(
                    lambda t=threshold: len(table_ids(settings)) >= t,
                    300,
                    f"{threshold} rows (run {attempt})",
                    interval=0.3,
                )
                time.sleep(delay)
            finally:
                os.killpg(process.pid, signal.SIGKILL)  # the driver and its JVM, no clean shutdown
                process.wait(30)
        assert process.returncode == -signal.SIGKILL
        kills.append((threshold, round(delay, 2), len(table_ids(settings))))
    assert kills[-1][2] < len(valid), f"killed too late to test anything (seed {seed})"

    with open(tmp_path / "stream-final.log", "wb") as log:
        final = subprocess.run(
            [*command, "--until-idle", "8", "--max-seconds", "400"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    output = (tmp_path / "stream-final.log").read_text(errors="replace")
    assert final.returncode == 0, output[-3000:]
    print(f"\nrandom seed {seed}; kills (rows threshold, extra delay s, rows stored at kill): {kills}")
    _check_outcome(settings, valid, broken, "stream SIGKILLed three times")
    # the last run resumed from the checkpoint: it did not read the topic from the start
    resumed_rows = int(output.rsplit("rows in ", 1)[1].split(",")[0])
    assert resumed_rows < n
