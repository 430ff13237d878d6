"""The local stack as a whole: PostgreSQL, Kafka and Cassandra as processes on this machine.

``LocalStack.up()`` is idempotent: a component whose recorded process is alive and answers is
left alone; the others are configured, started in parallel and waited for until each answers a
real request. ``down()`` stops exactly the processes the pid files name, after checking that
each pid still runs the program that was started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from userstream.errors import UserstreamError
from userstream.local import artifacts, processes, writer_jar
from userstream.local.cassandra import CassandraServer
from userstream.local.component import Component, NotReady, StartError
from userstream.local.kafka import KafkaServer
from userstream.local.postgres import PostgresServer
from userstream.settings import Settings

COMPONENT_NAMES = ("postgres", "kafka", "cassandra")

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    version: str
    state: str
    pid: int | None = None
    started_at: float | None = None
    rss_bytes: int | None = None
    detail: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain left-aligned text table (one header line, one line per row)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def format_status(statuses: Sequence[ComponentStatus]) -> str:
    headers = ("COMPONENT", "STATE", "ADDRESS", "VERSION", "PID", "STARTED", "MEMORY (RSS)")
    rows = []
    for status in statuses:
        started = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.started_at))
            if status.started_at
            else "-"
        )
        rows.append(
            (
                status.name,
                status.state,
                status.address,
                status.version,
                str(status.pid) if status.pid else "-",
                started,
                processes.format_bytes(status.rss_bytes),
            )
        )
    table = format_table(headers, rows)
    notes = [f"  {s.name}: {s.detail}" for s in statuses if s.detail]
    return table + ("\n" + "\n".join(notes) if notes else "")


def component_status(component: Component) -> ComponentStatus:
    """What a component's pid file, process and probe say about it right now."""
    status = ComponentStatus(
        name=component.name, address=component.address, version=component.version, state=STOPPED
    )
    record = component.record()
    if record is None or not processes.is_ours(record):
        detail = ""
        if record is not None:
            detail = f"pid file {component.pid_file} names pid {record.pid}, which is not running"
        busy = [p for p in component.ports() if processes.port_in_use(p.host, p.port)]
        if busy:
            owner = processes.port_owner(busy[0].port)
            detail = f"port {busy[0].port} is in use by another program" + (f" ({owner})" if owner else "")
        return replace(status, detail=detail)
    status = replace(
        status,
        pid=record.pid,
        started_at=record.started_at,
        rss_bytes=processes.tree_rss_bytes(record.pid),
    )
    try:
        reported = component.probe()
    except NotReady as exc:
        return replace(status, state=UNHEALTHY, detail=f"running but not answering: {exc}")
    return replace(status, state=HEALTHY, version=reported)


def bring_up(
    work: Sequence[tuple[Component, processes.PidRecord | None]],
    *,
    echo: Callable[[str], None],
    started: list[str] | None = None,
) -> list[str]:
    """Start (record None) or just wait for (a running record) each component, all in parallel.

    Each is prepared, started, probed until it answers and given its ``after_ready`` work.
    Appends the names of the components it starts to ``started`` (also when another one fails)
    and returns them; raises StartError with every failure.
    """
    errors: list[str] = []
    started = [] if started is None else started
    lock = threading.Lock()

    def one(component: Component, record: processes.PidRecord | None) -> None:
        began = time.monotonic()
        try:
            if record is None:
                component.prepare()
                record = component.start()
                with lock:
                    started.append(component.name)
                echo(f"{component.name}: started (pid {record.pid}), waiting for it to answer ...")
            reported = component.wait_ready(record)
            component.after_ready()
            echo(f"{component.name}: ready, version {reported}, in {time.monotonic() - began:.1f} s")
        except (StartError, UserstreamError) as exc:
            with lock:
                errors.append(str(exc))
        except Exception as exc:  # a client error in after_ready: report it, never lose it in a thread
            with lock:
                errors.append(f"{component.name}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(c, r), name=f"up-{c.name}", daemon=True) for c, r in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise StartError("\n\n".join(errors))
    return started


class LocalStack:
    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.echo = echo
        self.components: dict[str, Component] = {
            "postgres": PostgresServer(settings),
            "kafka": KafkaServer(settings),
            "cassandra": CassandraServer(settings),
        }
        self.started: list[str] = []

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir.resolve()

    def component(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise UserstreamError(
                f"unknown component {name!r}: choose one of {', '.join(self.components)}"
            ) from None

    # --- artifacts -----------------------------------------------------------------------------
    def fetch(self, *, force: bool = False) -> dict[str, Path]:
        """The jars of the servers and of Spark's Kafka connector (resolved), and the stream's
        Cassandra writer (built from spark-apps/cassandra-writer)."""
        folders = artifacts.resolve_all(self.settings.cache_dir, force=force, echo=self.echo)
        jar = writer_jar.build(self.settings.cache_dir, force=force, echo=self.echo)
        folders[writer_jar.NAME] = jar.parent
        return folders

    # --- status --------------------------------------------------------------------------------
    def status_of(self, component: Component) -> ComponentStatus:
        return component_status(component)

    def status(self) -> list[ComponentStatus]:
        return [self.status_of(component) for component in self.components.values()]

    # --- up ------------------------------------------------------------------------------------
    def check_prerequisites(self, names: Sequence[str]) -> None:
        processes.require_disk(self.state_dir)
        for name in names:
            self.components[name].check_prerequisites()

    def up(self, names: Sequence[str] | None = None) -> list[ComponentStatus]:
        """Start what is not running; wait until every component answers; return their status."""
        names = tuple(names) if names else tuple(self.components)
        for name in names:
            self.component(name)
        self.check_prerequisites(names)
        to_start: list[Component] = []
        to_wait: list[tuple[Component, processes.PidRecord]] = []
        for name in names:
            component = self.components[name]
            record = component.running_record()
            if record is not None:
                self.echo(f"{name}: already running (pid {record.pid})")
                to_wait.append((component, record))
                continue
            for port in component.ports():
                processes.require_free_port(port.host, port.port, port.what, port.setting)
            to_start.append(component)
        if any(c.name in ("kafka", "cassandra") for c in to_start):
            self.fetch()
        self.state_dir.mkdir(parents=True, exist_ok=True)

        work: list[tuple[Component, processes.PidRecord | None]] = [(c, None) for c in to_start]
        work += to_wait
        bring_up(work, echo=self.echo, started=self.started)
        return [self.status_of(self.components[name]) for name in names]

    # --- down ----------------------------------------------------------------------------------
    def down(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Stop the named components (default: all); return what happened to each."""
        names = tuple(names) if names is not None else tuple(self.components)
        outcomes: dict[str, str] = {}
        lock = threading.Lock()

        def stop(component: Component) -> None:
            outcome = component.stop()
            with lock:
                outcomes[component.name] = outcome

        threads = [threading.Thread(target=stop, args=(self.component(name),), daemon=True) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {name: outcomes[name] for name in names}
