"""What the command line prints: its lines, progress lines, JSON, and where library logs go."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest

from userstream.cli.console import Console, configure_logging
from userstream.progress import Snapshot


def test_not_a_terminal_gets_plain_progress_lines_and_the_summary() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err)
    began = time.monotonic()
    console.echo("ingesting 2000 synthetic users")
    console.progress(Snapshot("ingest", 0, began, total=2000))
    console.progress(Snapshot("ingest", 1000, began, total=2000))  # within 10 s: not printed
    console.progress(Snapshot("ingest", 2000, began, total=2000))
    console.result({"stored": 2000}, ["summary", "  stored 2000"])
    assert out.getvalue() == "ingesting 2000 synthetic users\nsummary\n  stored 2000\n"
    lines = err.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["ingest", "0/2,000"], ["ingest", "2,000/2,000"]]
    assert "\r" not in err.getvalue()


def test_json_puts_one_object_on_stdout_and_everything_else_on_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(json_output=True, out=out, err=err)
    console.echo("migrating Cassandra")
    console.progress(Snapshot("stream", 5, time.monotonic()))
    console.result({"stored": 5, "reconciled": True}, ["human summary"])
    assert json.loads(out.getvalue()) == {"stored": 5, "reconciled": True}
    assert "migrating Cassandra" in err.getvalue()
    assert "human summary" not in out.getvalue() + err.getvalue()


def test_a_new_step_ends_the_progress_line_of_the_previous_one() -> None:
    err = io.StringIO()
    console = Console(out=err, err=err)
    began = time.monotonic()
    console.progress(Snapshot("ingest", 0, began, total=10))
    console.progress(Snapshot("ingest", 10, began, total=10))
    console.echo("streaming")
    console.progress(Snapshot("stream", 0, began))
    console.finish()
    text = err.getvalue().splitlines()
    assert text[0].startswith("ingest  0/10")
    assert text[1].startswith("ingest  10/10")
    assert text[2] == "streaming"
    assert text[3].startswith("stream  0 records")


def test_library_records_go_to_the_log_file_and_ours_to_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    log_file = tmp_path / "logs" / "userstream.log"
    # the local stack's Kafka probe silences the kafka client's loggers in the process: undo that here
    kafka_logger = logging.getLogger("kafka")
    kafka_level = kafka_logger.level
    kafka_logger.setLevel(logging.NOTSET)
    assert configure_logging(verbose=False, log_file=log_file) == log_file
    try:
        logging.getLogger("kafka.net.sasl.scram").warning("Exchanging credentials in the clear")
        logging.getLogger("userstream.stream.runner").info("batch 0: rows in 10")
        logging.getLogger("userstream.stream.runner").warning("restarting the query")
        err = capsys.readouterr().err
        assert "restarting the query" in err
        assert "credentials in the clear" not in err
        assert "batch 0" not in err
        text = log_file.read_text(encoding="utf-8")
        assert "credentials in the clear" in text
        assert "batch 0: rows in 10" in text
        # -v: everything on the terminal, no file
        assert configure_logging(verbose=True, log_file=log_file) is None
        logging.getLogger("kafka.net.sasl.scram").warning("again in the clear")
        assert "again in the clear" in capsys.readouterr().err
    finally:
        configure_logging(verbose=False, log_file=None)
        kafka_logger.setLevel(kafka_level)


def test_in_a_pod_the_pod_log_is_the_log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    try:
        assert configure_logging(verbose=False, log_file=tmp_path / "userstream.log") is None
    finally:
        configure_logging(verbose=False, log_file=None)
