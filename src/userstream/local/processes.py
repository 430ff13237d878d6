"""Detached server processes: start, record, recognise, measure and stop them.

Every server of the local stack runs in its own session (it survives the command that started
it) and is recorded in a pid file as JSON: the pid, a *marker* (a string its command line must
contain, e.g. the path of its own config file) and the start time. Before anything signals a
pid, :func:`is_ours` checks that ``/proc/<pid>/cmdline`` still contains the marker, so a pid
the kernel has since reused for another program is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from userstream.errors import PrerequisiteError

PROC = Path("/proc")
MIN_JAVA_MAJOR = 17
MIN_FREE_DISK_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PidRecord:
    pid: int
    marker: str
    started_at: float

    def dumps(self) -> str:
        return json.dumps({"pid": self.pid, "marker": self.marker, "started_at": self.started_at}) + "\n"

    @classmethod
    def loads(cls, text: str) -> PidRecord | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["marker"]), float(data["started_at"]))
        except (ValueError, KeyError, TypeError):
            return None


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        return PidRecord.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def write_pid_file(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.dumps(), encoding="utf-8")
    tmp.replace(path)


def write_private(path: Path, data: str | bytes) -> None:
    """Write a 0600 file atomically (never readable by others, not even for a moment): keys,
    passwords, kubeconfigs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def process_state(pid: int, proc: Path = PROC) -> str | None:
    """The one-letter state from /proc/<pid>/stat ('R', 'S', 'Z', ...), None if no such process."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    _, _, rest = text.rpartition(")")
    fields = rest.split()
    return fields[0] if fields else None


def cmdline(pid: int, proc: Path = PROC) -> list[str] | None:
    """The argv of a live process, or None if it does not exist (or is a zombie).

    A process that was just spawned can show an empty cmdline for a moment while it executes the
    new program, so an empty one is read again for a short while before giving up.
    """
    for _ in range(20):
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        if raw:
            return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")]
        if process_state(pid, proc) in (None, "Z", "X"):
            return None  # gone, or a zombie waiting to be reaped
        time.sleep(0.05)
    return None  # a kernel thread, or nothing we could recognise


def is_ours(record: PidRecord, proc: Path = PROC) -> bool:
    """True when ``record.pid`` is alive and is still the program we started."""
    argv = cmdline(record.pid, proc)
    return argv is not None and any(record.marker in part for part in argv)


def children(pid: int, proc: Path = PROC) -> list[int]:
    try:
        text = (proc / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """Resident set size of one process, from /proc/<pid>/status (VmRSS)."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def tree_rss_bytes(pid: int, proc: Path = PROC) -> int | None:
    """RSS of a process plus its descendants (PostgreSQL forks one process per task)."""
    own = rss_bytes(pid, proc)
    if own is None:
        return None
    total = own
    pending = children(pid, proc)
    while pending:
        child = pending.pop()
        total += rss_bytes(child, proc) or 0
        pending.extend(children(child, proc))
    return total


def format_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    mib = value / 1024**2
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, stdout+stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
        )
    return process


def wait_gone(pid: int, timeout_s: float, proc: Path = PROC) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if cmdline(pid, proc) is None:
            return True
        time.sleep(0.2)
    _reap(pid)
    return cmdline(pid, proc) is None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (avoids a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(record: PidRecord, *, stop_signal: int = signal.SIGTERM, timeout_s: float = 30.0) -> str:
    """Stop a recorded process: ``stop_signal``, then SIGKILL after ``timeout_s``.

    Returns what happened: ``"stopped"``, ``"killed"``, ``"not running"`` or ``"not ours"``.
    """
    argv = cmdline(record.pid)
    if argv is None:
        return "not running"
    if not is_ours(record):
        return "not ours"
    try:
        os.kill(record.pid, stop_signal)
    except ProcessLookupError:
        return "not running"
    if wait_gone(record.pid, timeout_s):
        return "stopped"
    if is_ours(record):
        try:
            os.kill(record.pid, signal.SIGKILL)
        except ProcessLookupError:
            return "stopped"
        wait_gone(record.pid, 10.0)
        return "killed"
    return "stopped"


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


# --- prerequisites ------------------------------------------------------------------------------


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def port_owner(port: int, proc: Path = PROC) -> str | None:
    """Best effort: 'pid N (program)' listening on ``port``, read from /proc (None if unknown)."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            rows = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    argv = cmdline(int(entry.name), proc) or ["?"]
                    return f"pid {entry.name} ({Path(argv[0]).name})"
            except OSError:
                continue
    return None


def require_free_port(host: str, port: int, what: str, setting: str) -> None:
    if port_in_use(host, port):
        owner = port_owner(port)
        by = f" by {owner}" if owner else ""
        raise PrerequisiteError(
            f"port {port} for {what} is already in use{by}: stop that program or choose another "
            f"port with {setting}"
        )


def java_major(version_output: str) -> int | None:
    """Major version from `java -version` output ('17.0.15', '1.8.0_392' -> 8, '21')."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def find_java() -> str:
    """Path of a Java 17+ ``java``: $JAVA_HOME/bin/java first, then PATH."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = None
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        candidate = str(Path(java_home) / "bin" / "java")
    else:
        candidate = shutil.which("java")
    if candidate is None:
        raise PrerequisiteError(
            "java is not on PATH and JAVA_HOME is not set: install a Java 17+ JDK or JRE "
            "(e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    try:
        result = subprocess.run(
            [candidate, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrerequisiteError(f"{candidate} -version failed ({exc}): fix the Java installation") from None
    major = java_major(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA_MAJOR:
        raise PrerequisiteError(
            f"{candidate} is Java {major or 'of unknown version'}; the local stack needs Java "
            f"{MIN_JAVA_MAJOR}+: install it and put it first on PATH or set JAVA_HOME"
        )
    return candidate


def require_disk(path: Path, minimum: int = MIN_FREE_DISK_BYTES) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < minimum:
        raise PrerequisiteError(
            f"only {format_bytes(free)} free under {probe}; the local stack needs at least "
            f"{format_bytes(minimum)}: free some disk or set USERSTREAM_STATE_DIR elsewhere"
        )
