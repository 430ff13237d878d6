"""What every server of the local stack has in common: folders, pid file, start, probe, stop."""

from __future__ import annotations

import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from userstream.errors import UserstreamError
from userstream.local import processes
from userstream.settings import Settings


@dataclass(frozen=True)
class Port:
    host: str
    port: int
    what: str
    setting: str


class NotReady(Exception):
    """A probe did not get an answer (yet)."""


class StartError(UserstreamError):
    """A server did not come up; the message carries the log tail and the likely fix."""


class Component(ABC):
    """One local server. Subclasses say how to configure, start and question it."""

    name: str = ""
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 30.0
    start_timeout_s: float = 120.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.cache_dir = settings.cache_dir.resolve()
        self._process: subprocess.Popen[bytes] | None = None

    # --- folders -------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.state_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    # --- description ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def address(self) -> str: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def ports(self) -> list[Port]: ...

    @property
    @abstractmethod
    def marker(self) -> str:
        """A string the server's command line contains (a path inside this stack's state dir)."""

    # --- lifecycle -----------------------------------------------------------------------------
    def check_prerequisites(self) -> None:  # noqa: B027 (optional hook)
        """Raise PrerequisiteError when something the machine must provide is missing."""

    @abstractmethod
    def prepare(self) -> None:
        """Write the configuration and initialise storage (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str] | None:
        return None

    def run_as(self) -> str | None:
        return None

    @abstractmethod
    def probe(self) -> str:
        """Make one real request; return the version the server reports. Raise NotReady if none."""

    def after_ready(self) -> None:  # noqa: B027 (optional hook)
        """Work that needs the server up (e.g. create a database); idempotent."""

    def likely_fix(self, log_text: str) -> str:
        return (
            f"read {self.log_file}; `userstream local up` retries; if the local data is broken, "
            f"`userstream local down {self.name} && rm -rf {self.home}` resets it"
        )

    # --- state ---------------------------------------------------------------------------------
    def record(self) -> processes.PidRecord | None:
        return processes.read_pid_file(self.pid_file)

    def running_record(self) -> processes.PidRecord | None:
        """The pid record if its process is alive and still ours."""
        record = self.record()
        if record is not None and processes.is_ours(record):
            return record
        return None

    def start(self) -> processes.PidRecord:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._process = processes.start_detached(
            self.command(),
            log_file=self.log_file,
            cwd=self.home,
            env=self.environment(),
            user=self.run_as(),
        )
        record = processes.PidRecord(pid=self._process.pid, marker=self.marker, started_at=time.time())
        processes.write_pid_file(self.pid_file, record)
        return record

    def wait_ready(self, record: processes.PidRecord, timeout_s: float | None = None) -> str:
        """Probe until the server answers; fail early (with the log tail) if it exits."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        last_error = "no answer yet"
        while True:
            if self.exited(record):
                raise self.start_error(f"{self.name} exited during start-up")
            try:
                return self.probe()
            except NotReady as exc:
                last_error = str(exc) or type(exc).__name__
            if time.monotonic() > deadline:
                raise self.start_error(
                    f"{self.name} did not answer within {timeout_s or self.start_timeout_s:.0f} s "
                    f"({last_error})"
                )
            time.sleep(0.5)

    def exited(self, record: processes.PidRecord) -> bool:
        if self._process is not None and self._process.pid == record.pid:
            return self._process.poll() is not None  # our child: its exit status is definitive
        if processes.is_ours(record):
            return False
        time.sleep(0.5)  # /proc may be briefly empty while a launcher re-executes itself
        return not processes.is_ours(record)

    def start_error(self, headline: str) -> StartError:
        text = processes.tail(self.log_file, 25)
        return StartError(
            f"{headline}; last lines of {self.log_file}:\n{text}\nlikely fix: {self.likely_fix(text)}"
        )

    def stop(self) -> str:
        record = self.record()
        if record is None:
            return "not running"
        outcome = processes.stop(record, stop_signal=self.stop_signal, timeout_s=self.stop_timeout_s)
        if outcome != "not ours":
            self.pid_file.unlink(missing_ok=True)
        else:
            # the pid now belongs to another program: forget it, never signal it
            self.pid_file.unlink(missing_ok=True)
            outcome = "not running (stale pid file removed)"
        return outcome
