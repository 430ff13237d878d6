"""Credentials of the local stack: generated once into ``<state>/credentials/``, never in code.

``kafka.json`` and ``cassandra.json`` map each principal (``userstream-admin`` and one per user or
role of the access definition) to a random password; the folder is 0700, the files 0600. A
principal the definition gains later gets its password on the next ``userstream local up``.

:func:`client_settings` gives a local client its least-privilege principal: when the settings
carry no Kafka / Cassandra username and point at the local stack, the matching credentials are
filled in (an explicit ``USERSTREAM_*`` setting always wins).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from userstream.access import LOCAL_PREFIX, AccessDefinition, load_definition, principal
from userstream.errors import UserstreamError
from userstream.local.processes import write_private
from userstream.settings import Settings

ADMIN = principal("admin", LOCAL_PREFIX)
KAFKA_MECHANISM = "SCRAM-SHA-512"
LOOPBACK = ("127.0.0.1", "localhost")
_LOCK = threading.Lock()

Client = Literal["ingest", "stream", "admin", "checks", "health"]
# Which principal each local client uses. Kafka has no read-only user in the chart: the checks
# (reconciliation reading the dead-letter topic) use the local admin there.
KAFKA_PRINCIPALS: dict[str, str] = {
    "ingest": principal("ingest"),
    "stream": principal("stream"),
    "admin": ADMIN,
    "checks": ADMIN,
    "health": principal("health"),
}
# Cassandra: the role of the definition (by key) each client uses; the admin is not in it.
CASSANDRA_ROLES: dict[str, str | None] = {
    "ingest": None,
    "stream": "writer",
    "admin": None,
    "checks": "reader",
    "health": None,
}


@dataclass(frozen=True)
class LocalCredentials:
    kafka: dict[str, str]
    cassandra: dict[str, str]

    def kafka_password(self, name: str) -> str:
        return _lookup(self.kafka, name, "kafka")

    def cassandra_password(self, name: str) -> str:
        return _lookup(self.cassandra, name, "cassandra")


def _lookup(table: dict[str, str], name: str, what: str) -> str:
    try:
        return table[name]
    except KeyError:
        raise UserstreamError(
            f"no {what} password for {name!r} in the local stack's credentials: run `userstream local up`"
        ) from None


def credentials_dir(state_dir: Path) -> Path:
    return state_dir.resolve() / "credentials"


def _read(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserstreamError(f"cannot read {path}: {exc}; remove it and the component's data") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UserstreamError(f"{path} is not a JSON object of name -> password")
    return {str(k): v for k, v in data.items()}


def _write_private(path: Path, data: dict[str, str]) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def ensure(state_dir: Path, definition: AccessDefinition) -> LocalCredentials:
    """Load the credentials, generating a password for every principal that has none yet."""
    folder = credentials_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    # the components prepare in parallel threads (and maybe processes): one writer at a time
    with _LOCK, open(folder / ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(folder, definition)


def _ensure_locked(folder: Path, definition: AccessDefinition) -> LocalCredentials:
    wanted = {
        "kafka": [ADMIN, *(principal(key) for key in definition.kafka_users)],
        "cassandra": [ADMIN, *(role.role_name() for role in definition.cassandra_roles.values())],
    }
    tables: dict[str, dict[str, str]] = {}
    for what, names in wanted.items():
        path = folder / f"{what}.json"
        table = _read(path)
        missing = [name for name in names if name not in table]
        for name in missing:
            table[name] = secrets.token_urlsafe(24)
        if missing or not path.is_file() or (path.stat().st_mode & 0o777) != 0o600:
            _write_private(path, table)
        tables[what] = table
    return LocalCredentials(kafka=tables["kafka"], cassandra=tables["cassandra"])


def load(state_dir: Path) -> LocalCredentials | None:
    """The stack's credentials, or None when it never generated any."""
    folder = credentials_dir(state_dir)
    kafka, cassandra = _read(folder / "kafka.json"), _read(folder / "cassandra.json")
    if not kafka and not cassandra:
        return None
    return LocalCredentials(kafka=kafka, cassandra=cassandra)


def _local_hosts(settings: Settings) -> set[str]:
    hosts = set(LOOPBACK)
    if settings.local_external_address:
        hosts.add(settings.local_external_address)
    return hosts


def kafka_is_local(settings: Settings) -> bool:
    host = settings.kafka_bootstrap_servers[0].rpartition(":")[0]
    return host in _local_hosts(settings)


def cassandra_is_local(settings: Settings) -> bool:
    return settings.cassandra_contact_points[0] in _local_hosts(settings)


def kafka_client_update(name: str, password: str) -> dict[str, Any]:
    return {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": KAFKA_MECHANISM,
        "kafka_username": name,
        "kafka_password": SecretStr(password),
    }


def cassandra_principal(client: Client) -> str | None:
    """The Cassandra role ``client`` logs in as (None: it does not use Cassandra)."""
    if client == "admin":
        return ADMIN
    key = CASSANDRA_ROLES[client]
    return load_definition().cassandra_roles[key].role_name() if key else None


def client_settings(settings: Settings, client: Client) -> Settings:
    """``settings`` with the local stack's credentials of ``client`` where it carries none.

    Unchanged when the stack has no credentials (not started yet, or a cluster), for a server
    that is not the local stack's, and for each of Kafka / Cassandra that has a username set.
    """
    found = load(settings.state_dir)
    if found is None:
        return settings
    update: dict[str, Any] = {}
    kafka_name = KAFKA_PRINCIPALS[client]
    if (
        settings.kafka_username is None
        and settings.kafka_sasl_mechanism is None
        and kafka_is_local(settings)
        and kafka_name in found.kafka
    ):
        update.update(kafka_client_update(kafka_name, found.kafka[kafka_name]))
    cassandra_name = cassandra_principal(client)
    if (
        cassandra_name is not None
        and settings.cassandra_username is None
        and cassandra_is_local(settings)
        and cassandra_name in found.cassandra
    ):
        update["cassandra_username"] = cassandra_name
        update["cassandra_password"] = SecretStr(found.cassandra[cassandra_name])
        if settings.local_external_address and settings.cassandra_contact_points[0] in LOOPBACK:
            # CQL is served on the external address only (rpc_address): see local/cassandra.py
            update["cassandra_contact_points"] = [settings.local_external_address]
    return settings.model_copy(update=update) if update else settings
