"""Pid files, /proc checks, prerequisites and the status table of the local stack (no servers)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from userstream.errors import PrerequisiteError
from userstream.local import processes
from userstream.local.stack import ComponentStatus, format_status, format_table


def _fake_proc(root: Path, pid: int, argv: list[str], rss_kb: int, children: list[int] = ()) -> None:  # type: ignore[assignment]
    folder = root / str(pid)
    (folder / "task" / str(pid)).mkdir(parents=True)
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (folder / "status").write_text(f"Name:\tx\nVmRSS:\t  {rss_kb} kB\n")
    (folder / "task" / str(pid) / "children").write_text(" ".join(map(str, children)))


def test_pid_record_round_trip(tmp_path: Path) -> None:
    record = processes.PidRecord(pid=42, marker="/state/kafka/server.properties", started_at=1.5)
    processes.write_pid_file(tmp_path / "run" / "kafka.pid", record)
    assert processes.read_pid_file(tmp_path / "run" / "kafka.pid") == record
    (tmp_path / "bad.pid").write_text("not json")
    assert processes.read_pid_file(tmp_path / "bad.pid") is None
    assert processes.read_pid_file(tmp_path / "absent.pid") is None


def test_is_ours_needs_the_marker_in_the_cmdline(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 100, ["java", "kafka.Kafka", "/state/kafka/server.properties"], 1000)
    _fake_proc(tmp_path, 101, ["vim", "notes.txt"], 10)
    (tmp_path / "102").mkdir()
    (tmp_path / "102" / "cmdline").write_bytes(b"")  # zombie
    marker = "/state/kafka/server.properties"
    assert processes.is_ours(processes.PidRecord(100, marker, 0), tmp_path)
    assert not processes.is_ours(processes.PidRecord(101, marker, 0), tmp_path)  # pid reused
    assert not processes.is_ours(processes.PidRecord(102, marker, 0), tmp_path)
    assert not processes.is_ours(processes.PidRecord(103, marker, 0), tmp_path)  # gone


def test_tree_rss_sums_descendants(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 10, ["postgres"], 1000, [11, 12])
    _fake_proc(tmp_path, 11, ["postgres: walwriter"], 100, [13])
    _fake_proc(tmp_path, 12, ["postgres: checkpointer"], 10)
    _fake_proc(tmp_path, 13, ["postgres: worker"], 1)
    assert processes.rss_bytes(10, tmp_path) == 1000 * 1024
    assert processes.tree_rss_bytes(10, tmp_path) == 1111 * 1024
    assert processes.tree_rss_bytes(99, tmp_path) is None


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("garbage", None),
    ],
)
def test_java_major(text: str, major: int | None) -> None:
    assert processes.java_major(text) == major


def test_missing_java_is_a_prerequisite_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(processes.shutil, "which", lambda _name: None)
    with pytest.raises(PrerequisiteError, match="Java 17"):
        processes.find_java()


def test_taken_port_is_a_prerequisite_error_naming_the_setting() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert processes.port_in_use("127.0.0.1", port)
        with pytest.raises(PrerequisiteError, match=f"port {port} .*USERSTREAM_X"):
            processes.require_free_port("127.0.0.1", port, "Kafka", "USERSTREAM_X")
    assert not processes.port_in_use("127.0.0.1", port)


def test_low_disk_is_a_prerequisite_error(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match="free"):
        processes.require_disk(tmp_path / "not" / "yet", minimum=1 << 62)


def test_stop_terminates_our_process_and_spares_others(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-arg")
    process = processes.start_detached(
        [sys.executable, "-c", "import time, sys; time.sleep(60)", marker],
        log_file=tmp_path / "x.log",
        cwd=tmp_path,
    )
    record = processes.PidRecord(process.pid, marker, time.time())
    assert processes.is_ours(record)
    foreign = processes.PidRecord(process.pid, "/somewhere/else", time.time())
    assert processes.stop(foreign) == "not ours"
    assert processes.is_ours(record)
    assert processes.stop(record, stop_signal=signal.SIGTERM, timeout_s=10) == "stopped"
    assert processes.cmdline(process.pid) is None  # gone (and reaped)
    assert processes.stop(record) == "not running"
    assert "starting:" in (tmp_path / "x.log").read_text()


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    marker = str(tmp_path / "stubborn")
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    process = subprocess.Popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"up\n"
    record = processes.PidRecord(process.pid, marker, time.time())
    assert processes.stop(record, timeout_s=0.5) == "killed"
    assert processes.cmdline(process.pid) is None


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("\n".join(f"line {n}" for n in range(100)) + "\n")
    assert processes.tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no log" in processes.tail(tmp_path / "missing.log")


def test_format_bytes() -> None:
    assert processes.format_bytes(None) == "-"
    assert processes.format_bytes(300 * 1024**2) == "300 MiB"
    assert processes.format_bytes(3 * 1024**3) == "3.00 GiB"


def test_format_table_aligns_columns() -> None:
    table = format_table(("A", "LONG HEADER"), [("xxxxx", "1"), ("y", "22")])
    assert table.splitlines() == ["A      LONG HEADER", "xxxxx  1", "y      22"]


def test_format_status_shows_state_and_notes() -> None:
    statuses = [
        ComponentStatus(
            "kafka", "127.0.0.1:9092", "4.3.0", "healthy", pid=7, started_at=0.0, rss_bytes=2**29
        ),
        ComponentStatus("cassandra", "127.0.0.1:9042", "5.0.9", "stopped", detail="port 9042 is in use"),
    ]
    text = format_status(statuses)
    lines = text.splitlines()
    assert lines[0].split() == [
        "COMPONENT",
        "STATE",
        "ADDRESS",
        "VERSION",
        "PID",
        "STARTED",
        "MEMORY",
        "(RSS)",
    ]
    assert lines[1].split()[:5] == ["kafka", "healthy", "127.0.0.1:9092", "4.3.0", "7"]
    assert lines[1].endswith("512 MiB")
    assert lines[2].split()[:2] == ["cassandra", "stopped"]
    assert "cassandra: port 9042 is in use" in text
