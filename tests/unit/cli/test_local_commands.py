"""The `userstream local` command line (parsing and the errors that need no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream import cli


def test_local_subcommands_are_registered() -> None:
    parser = cli.build_parser()
    for command in ("fetch", "up", "down", "status", "smoke"):
        args = parser.parse_args(["local", command])
        assert callable(args.func)
    args = parser.parse_args(["local", "logs", "kafka", "-n", "5"])
    assert (args.component, args.lines) == ("kafka", 5)


def test_unknown_component_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["local", "down", "zookeeper"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("userstream: unknown component zookeeper")
    assert len(err.strip().splitlines()) == 1


def test_status_of_an_empty_state_dir_says_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # ports far from the defaults, so a running stack on this machine does not interfere
    monkeypatch.setenv("USERSTREAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("USERSTREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("USERSTREAM_LOCAL_KAFKA_CONTROLLER_PORT", "2")
    monkeypatch.setenv("USERSTREAM_CASSANDRA_PORT", "3")
    monkeypatch.setenv("USERSTREAM_LOCAL_CASSANDRA_STORAGE_PORT", "4")
    monkeypatch.setenv("USERSTREAM_POSTGRES_DSN", "postgresql://userstream@127.0.0.1:5/userstream")
    assert cli.main(["local", "status"]) == 1
    out = capsys.readouterr()
    assert out.out.count("stopped") == 3
    assert "userstream local up" in out.err


def test_logs_without_a_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("USERSTREAM_STATE_DIR", str(tmp_path))
    assert cli.main(["local", "logs", "cassandra"]) == 1
    assert "no log yet" in capsys.readouterr().err
