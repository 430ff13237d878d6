"""LocalStack.up/status/down on a stand-in server (a tiny Python TCP listener), no real servers."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from userstream.errors import PrerequisiteError
from userstream.local.component import Component, NotReady, Port, StartError
from userstream.local.stack import HEALTHY, STOPPED, LocalStack
from userstream.settings import Settings, load_settings

LISTENER = (
    "import socket, sys, time\n"
    "if sys.argv[2] == 'crash':\n"
    "    print('fatal: cannot start, bad config', flush=True); sys.exit(3)\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    conn, _ = s.accept(); conn.sendall(b'fake 1.0'); conn.close()\n"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServer(Component):
    name = "fake"
    start_timeout_s = 20.0
    stop_timeout_s = 5.0

    def __init__(self, settings: Settings, port: int, mode: str = "serve") -> None:
        super().__init__(settings)
        self.port = port
        self.mode = mode

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def version(self) -> str:
        return "1.0"

    def ports(self) -> list[Port]:
        return [Port("127.0.0.1", self.port, "the fake server", "FAKE_PORT")]

    @property
    def marker(self) -> str:
        return str(self.home / "fake.conf")

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "fake.conf").write_text("ok")

    def command(self) -> list[str]:
        return [sys.executable, "-c", LISTENER, str(self.port), self.mode, self.marker]

    def probe(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                return conn.recv(64).decode().split()[1]
        except OSError as exc:
            raise NotReady(str(exc)) from None


@pytest.fixture
def stack(tmp_path: Path) -> LocalStack:
    settings = load_settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    local = LocalStack(settings, echo=lambda _line: None)
    local.components = {"fake": FakeServer(settings, _free_port())}
    return local


def test_up_status_up_again_down(stack: LocalStack) -> None:
    (status,) = stack.up()
    assert status.state == HEALTHY
    assert status.pid
    assert stack.started == ["fake"]
    assert stack.components["fake"].pid_file.is_file()

    again = LocalStack(stack.settings, echo=lambda _line: None)
    again.components = stack.components
    (same,) = again.up()
    assert again.started == []
    assert same.pid == status.pid

    assert stack.down() == {"fake": "stopped"}
    (after,) = stack.status()
    assert after.state == STOPPED
    assert not stack.components["fake"].pid_file.exists()
    assert stack.down() == {"fake": "not running"}


def test_a_server_that_exits_reports_its_log_and_a_fix(stack: LocalStack) -> None:
    fake = stack.components["fake"]
    assert isinstance(fake, FakeServer)
    fake.mode = "crash"
    with pytest.raises(StartError) as failure:
        stack.up()
    message = str(failure.value)
    assert "fake exited during start-up" in message
    assert "fatal: cannot start, bad config" in message
    assert "likely fix:" in message
    assert stack.started == ["fake"]


def test_a_port_held_by_another_program_stops_up_before_starting(stack: LocalStack) -> None:
    fake = stack.components["fake"]
    assert isinstance(fake, FakeServer)
    with socket.socket() as other:
        other.bind(("127.0.0.1", fake.port))
        other.listen()
        with pytest.raises(
            PrerequisiteError, match=f"port {fake.port} for the fake server is already in use"
        ):
            stack.up()
        (status,) = stack.status()
        assert status.state == STOPPED
        assert f"port {fake.port} is in use" in status.detail
    assert stack.started == []


def test_stale_pid_file_of_a_reused_pid_is_never_signalled(stack: LocalStack) -> None:
    from userstream.local import processes

    fake = stack.components["fake"]
    # pid 1 exists but is not our server: down must forget it, not signal it
    processes.write_pid_file(fake.pid_file, processes.PidRecord(1, fake.marker, 0.0))
    assert stack.down() == {"fake": "not running (stale pid file removed)"}
    assert not fake.pid_file.exists()
