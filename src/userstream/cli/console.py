"""What the command line shows: its own lines, a progress line, and where the rest goes.

Quiet by default: the libraries' log records (kafka-python, the Cassandra driver, py4j, Python
warnings) and everything the Spark JVM prints go to ``<state_dir>/logs/userstream.log``; the
terminal gets the command's own lines, userstream's warnings and errors, and a progress line.
``userstream -v`` sends all of it to the terminal instead. Inside a Kubernetes pod the pod's log
is the log file: records go to stderr as they are.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from userstream.progress import Snapshot, due, render

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# drawn again this often on a terminal (the elapsed time moves while a micro-batch runs)
LIVE_INTERVAL_S = 0.5
# one plain line this often when the output is not a terminal (a log, a pipe, CI)
PLAIN_INTERVAL_S = 10.0


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates the file and its folder at the first record only."""

    def _open(self) -> Any:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


class _OwnRecords(logging.Filter):
    """userstream's own warnings and errors (a library's go to the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "userstream" or record.name.startswith("userstream.")


def in_a_pod() -> bool:
    # the kubelet sets it in every container (Kubernetes docs, "Accessing the API from a Pod")
    return "KUBERNETES_SERVICE_HOST" in os.environ


def log_file_of(state_dir: Path) -> Path:
    return state_dir.resolve() / "logs" / "userstream.log"


def configure_logging(*, verbose: bool, log_file: Path | None) -> Path | None:
    """Route log records; returns the log file in use (None: everything goes to stderr)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "userstream", False):
            root.removeHandler(handler)
            handler.close()
    logging.captureWarnings(True)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    handlers: list[logging.Handler] = [console]
    if verbose or log_file is None or in_a_pod():
        log_file = None
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
    else:
        root.setLevel(logging.INFO)
        console.setLevel(logging.WARNING)
        console.addFilter(_OwnRecords())
        to_file = _LazyFileHandler(log_file, encoding="utf-8", delay=True)
        to_file.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        handler.userstream = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    return log_file


class Console:
    """The command's output: its lines (stdout, or stderr with ``--json``), one progress line
    (stderr; redrawn in place on a terminal, a plain line every 10 s otherwise) and the JSON result.

    ``log_file``: where the libraries' and Spark's output goes (None: the terminal, ``-v``).
    """

    def __init__(
        self,
        *,
        log_file: Path | None = None,
        json_output: bool = False,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.log_file = log_file
        self.json_output = json_output
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.err.isatty()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._drawn = False
        self._last_plain: float | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- the command's own lines -------------------------------------------------------------
    def echo(self, line: str) -> None:
        """A line of the command's own; it starts a new step, so it ends the current progress line."""
        with self._lock:
            self._end_line()
            print(line, file=self.err if self.json_output else self.out, flush=True)

    def result(self, data: dict[str, Any], lines: list[str]) -> None:
        """The final summary: ``lines`` for people, ``data`` as one JSON object with ``--json``."""
        self.finish()
        if self.json_output:
            print(json.dumps(data, default=str, ensure_ascii=False), file=self.out, flush=True)
        else:
            for line in lines:
                print(line, file=self.out)
            self.out.flush()

    # --- the progress line -------------------------------------------------------------------
    def progress(self, snapshot: Snapshot) -> None:
        with self._lock:
            if self._snapshot is not None and self._snapshot.stage != snapshot.stage:
                self._end_line()
            self._snapshot = snapshot
            if self.live:
                self._start_ticker()
                self._erase()
                self._draw()
            elif due(self._last_plain, time.monotonic(), PLAIN_INTERVAL_S):
                self._plain()

    def finish(self) -> None:
        """End the current progress line, leaving its last state as a plain line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self._stop.clear()
        with self._lock:
            self._end_line()

    @contextmanager
    def stage(self) -> Iterator[Console]:
        """``with console.stage():`` ends the progress line however the block ends."""
        try:
            yield self
        finally:
            self.finish()

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(LIVE_INTERVAL_S):
            with self._lock:
                self._erase()
                self._draw()

    def _draw(self) -> None:
        if not self.live or self._snapshot is None:
            return
        width = shutil.get_terminal_size((100, 20)).columns
        self.err.write(render(self._snapshot, time.monotonic(), width) + "\r")
        self.err.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self.err.write("\x1b[2K\r")  # ECMA-48 EL (erase in line), whole line
            self.err.flush()
            self._drawn = False

    def _end_line(self) -> None:
        """Leave the current progress line's last state as a plain line; no progress line after it."""
        self._erase()
        if self._snapshot is not None:
            self._plain()
        self._snapshot = None
        self._last_plain = None

    def _plain(self) -> None:
        if self._snapshot is None:
            return
        now = time.monotonic()
        print(render(self._snapshot, now), file=self.err, flush=True)
        self._last_plain = now
