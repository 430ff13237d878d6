"""Fault injection: Cassandra stops mid-stream and comes back; the stream needs no human.

The stream's writer retries with capped exponential backoff while Cassandra is down (for up to
USERSTREAM_CASSANDRA_RETRY_DEADLINE_SECONDS), so a restart costs latency, never records; past the
deadline the process exits non-zero (the checkpoint lets a restart resume).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid

from pipeline_support import isolated, table_ids, wait_for

from userstream.contract.ids import record_id
from userstream.ingest.run import ingest
from userstream.ingest.sources.synthetic import SyntheticSource, generate
from userstream.local.run import dead_letter_reasons
from userstream.local.stack import LocalStack
from userstream.settings import settings_env
from userstream.storage.migration import migrate


def _expected(settings, first: int, n: int) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    valid, broken = set(), set()
    for index in range(first, first + n):
        document, kind = generate(settings.synthetic_seed, index, settings.synthetic_broken_rate)
        (broken if kind else valid).add(record_id(document))
    return valid, broken


def _final_counts(output: str) -> tuple[int, int, int]:
    """rows in, stored, dead-lettered of the stream's last line ("stream stopped: ...")."""
    line = output.rsplit("stream stopped:", 1)[1].splitlines()[0]
    rows_in = int(line.split("rows in ", 1)[1].split(",")[0])
    stored = int(line.split("stored ", 1)[1].split(",")[0])
    dead = int(line.split("dead-lettered ", 1)[1].split(",")[0].split()[0])
    return rows_in, stored, dead


def test_a_cassandra_restart_mid_stream_loses_nothing_and_needs_no_human(
    local_stack, stack_settings, unique_names, tmp_path
):
    n = 1500
    settings = isolated(
        stack_settings,
        unique_names,
        tmp_path,
        stream_max_offsets_per_trigger=200,
        synthetic_broken_rate=0.02,
        cassandra_retry_deadline_seconds=600,
    )
    migrate(settings)
    # a stack object of its own: what it restarts stays running after the tier (the fixture's
    # stack stops at the end only what the fixture itself started)
    stack = LocalStack(local_stack.settings)
    source = SyntheticSource(settings.synthetic_seed, settings.synthetic_broken_rate)
    ingest(settings, source=source, records=n, batch_size=500)
    log_path = tmp_path / "stream.log"
    command = [sys.executable, "-m", "userstream.cli", "-v", "stream", "--no-migrate", "--max-seconds", "900"]
    with open(log_path, "wb") as log:
        stream = subprocess.Popen(command, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(table_ids(settings)) >= 200, 300, "the first rows in Cassandra", interval=0.5)

        assert stack.down(["cassandra"])
        # more records arrive while Cassandra is down: micro-batches run and wait on their writes
        ingest(settings, source=source, records=2 * n, batch_size=500)
        time.sleep(15)  # longer than several micro-batches (trigger 1 s)
        assert stream.poll() is None, log_path.read_text(errors="replace")[-3000:]
        stack.up(["cassandra"])

        valid, broken = _expected(settings, 0, 2 * n)
        wait_for(lambda: len(table_ids(settings)) >= len(valid), 300, "every valid row after the restart")
        time.sleep(3)  # the batches after the last write commit; the stream must still be running
        assert stream.poll() is None, log_path.read_text(errors="replace")[-3000:]
    finally:
        if stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
        stream.wait(120)
        if not stack.status_of(stack.component("cassandra")).healthy:
            stack.up(["cassandra"])
    output = log_path.read_text(errors="replace")
    assert stream.returncode == 0, output[-3000:]
    assert "retrying" in output  # the writer did wait for Cassandra

    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid)  # no duplicate rows
    assert set(ids) == valid  # no valid record lost
    letters = dead_letter_reasons(settings)
    assert {uuid.UUID(key) for key in letters} == broken
    assert all(headers.get("dlq.reason") for headers in letters.values())  # every one has a reason
    rows_in, stored, dead = _final_counts(output)
    assert rows_in == stored + dead == 2 * n  # in = stored + dead-lettered
    assert (stored, dead) == (len(valid), len(broken))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_past_the_retry_deadline_the_stream_exits_non_zero_naming_the_setting(
    stack_settings, unique_names, tmp_path
):
    """No Cassandra at all on the configured port: the writer gives up after its deadline."""
    settings = isolated(stack_settings, unique_names, tmp_path, synthetic_broken_rate=0.0)
    migrate(settings)
    ingest(settings, source=SyntheticSource(settings.synthetic_seed, 0.0), records=20, batch_size=20)
    nowhere = settings.model_copy(
        update={"cassandra_port": _free_port(), "cassandra_retry_deadline_seconds": 5}
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "userstream.cli", "-v", "stream", "--no-migrate", "--max-seconds", "300"],
        env=settings_env(nowhere),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "USERSTREAM_CASSANDRA_RETRY_DEADLINE_SECONDS" in output, output[-3000:]
    assert time.monotonic() - began >= 5  # not before the deadline
    assert table_ids(settings) == []
