"""Cassandra: the idempotent migration and the executor-side sink of the stream.

The keyspace (replication from ``cassandra_replication``) and the table (DDL derived from the
contract) are created with ``IF NOT EXISTS``; columns the contract gained since are added with
``ALTER TABLE``, so the migration can run at every start.

The sink runs inside Spark executors (``mapPartitions`` inside ``foreachBatch``) over the batch's
records as JSON text: in one pass it counts every record by rejection reason and inserts the valid
ones. Each Python worker keeps one driver session and prepared statement per configuration,
inserts with bounded concurrency (``execute_concurrent_with_args``) and retries failed rows with
backoff. An insert is an upsert by ``id``, so a replayed micro-batch rewrites the same rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from userstream import contract
from userstream.errors import UserstreamError
from userstream.settings import Settings

log = logging.getLogger(__name__)


class CassandraError(UserstreamError):
    """Cassandra could not be reached or refused a write after every retry."""


@dataclass(frozen=True)
class CassandraConfig:
    """What an executor needs to write (plain values: pickled into every task)."""

    contact_points: tuple[str, ...]
    port: int
    local_dc: str
    keyspace: str
    table: str
    username: str | None = None
    password: str | None = None
    concurrency: int = 64
    retries: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> CassandraConfig:
        return cls(
            contact_points=tuple(settings.cassandra_contact_points),
            port=settings.cassandra_port,
            local_dc=settings.cassandra_local_dc,
            keyspace=settings.cassandra_keyspace,
            table=settings.cassandra_table,
            username=settings.cassandra_username,
            password=settings.cassandra_password.get_secret_value() if settings.cassandra_password else None,
            concurrency=settings.cassandra_write_concurrency,
            retries=settings.stream_write_retries,
        )


def connect(config: CassandraConfig, keyspace: str | None = None) -> tuple[Any, Any]:
    """A (Cluster, Session) pair; the caller shuts the cluster down."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    for noisy in ("cassandra.cluster", "cassandra.connection", "cassandra.pool"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=config.local_dc)),
        request_timeout=30,
    )
    auth = PlainTextAuthProvider(config.username, config.password) if config.username else None
    cluster = Cluster(
        list(config.contact_points),
        port=config.port,
        auth_provider=auth,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=15,
    )
    try:
        session = cluster.connect(keyspace)
    except Exception as exc:
        cluster.shutdown()
        hosts = ",".join(config.contact_points)
        raise CassandraError(
            f"cannot connect to Cassandra at {hosts}:{config.port} ({exc}); check "
            "USERSTREAM_CASSANDRA_CONTACT_POINTS or start the local stack with `userstream local up`"
        ) from None
    return cluster, session


# --- least-privilege roles -------------------------------------------------------------------------
# In a cluster every client but the migration uses a role of its own (the K8ssandra superuser only
# creates them): the stream a writer (MODIFY on the table), the health checks a reader (SELECT).
# Names and passwords come from these variables, which the chart fills from its Secrets.
ROLE_ENV = {
    "writer": ("USERSTREAM_CASSANDRA_WRITER_ROLE", "USERSTREAM_CASSANDRA_WRITER_PASSWORD", ("MODIFY",)),
    "reader": ("USERSTREAM_CASSANDRA_READER_ROLE", "USERSTREAM_CASSANDRA_READER_PASSWORD", ("SELECT",)),
}
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class CassandraRole:
    """A login role with permissions on the pipeline's table only."""

    name: str
    password: str = field(repr=False)
    permissions: tuple[str, ...]


def roles_from_env(environ: Mapping[str, str] | None = None) -> list[CassandraRole]:
    """The roles the migration creates; none when no role variable is set (the local stack)."""
    env = os.environ if environ is None else environ
    roles = []
    for name_var, password_var, permissions in ROLE_ENV.values():
        name, password = env.get(name_var, "").strip(), env.get(password_var, "")
        if not name and not password:
            continue
        if not name or not password:
            missing = name_var if not name else password_var
            raise CassandraError(f"{missing} is not set: set both {name_var} and {password_var}, or neither")
        if not _ROLE_NAME.match(name):
            raise CassandraError(
                f"{name_var}={name!r}: a role name is lower case letters, digits and _ (at most 48)"
            )
        roles.append(CassandraRole(name, password, permissions))
    return roles


def _cql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role_statements(keyspace: str, table: str, roles: Iterable[CassandraRole]) -> list[str]:
    """CQL that creates each role (or resets its password to the Secret's) and grants it exactly its
    permissions on ``keyspace.table``; idempotent."""
    statements = []
    for role in roles:
        password = _cql_string(role.password)
        statements.append(
            f"CREATE ROLE IF NOT EXISTS {role.name} WITH PASSWORD = {password} AND LOGIN = true"
        )
        statements.append(f"ALTER ROLE {role.name} WITH PASSWORD = {password} AND LOGIN = true")
        for permission in role.permissions:
            statements.append(f"GRANT {permission} ON TABLE {keyspace}.{table} TO {role.name}")
    return statements


def redact(statement: str) -> str:
    """A statement fit for a log: role passwords replaced."""
    return re.sub(r"PASSWORD = '(?:[^']|'')*'", "PASSWORD = '***'", statement)


def connect_until(
    config: CassandraConfig,
    wait_seconds: float,
    *,
    connector: Callable[[CassandraConfig], tuple[Any, Any]] = connect,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 10.0,
) -> tuple[Any, Any]:
    """Connect, retrying for up to ``wait_seconds`` while Cassandra does not accept CQL yet (a new
    datacenter takes minutes); the last error is raised once the deadline has passed."""
    deadline = clock() + wait_seconds
    while True:
        try:
            return connector(config)
        except CassandraError as exc:
            left = deadline - clock()
            if left <= 0:
                raise CassandraError(
                    f"Cassandra did not accept CQL within {wait_seconds:.0f}s: {exc}"
                ) from None
            log.warning("Cassandra not ready (%s); retrying for another %.0fs", exc, left)
            sleep(min(interval, left))


def migrate(settings: Settings, roles: Iterable[CassandraRole] = (), wait_seconds: float = 0.0) -> list[str]:
    """Create the keyspace and table if missing, add new contract columns and create ``roles``;
    returns the CQL run (role passwords redacted). Waits up to ``wait_seconds`` for CQL."""
    config = CassandraConfig.from_settings(settings)
    definition = contract.table_definition()
    cluster, session = connect_until(config, wait_seconds)
    executed: list[str] = []
    try:
        for statement in (
            contract.create_keyspace_cql(config.keyspace, settings.replication),
            contract.create_table_cql(config.keyspace, config.table),
        ):
            session.execute(statement, timeout=60)
            executed.append(statement)
        rows = session.execute(
            "SELECT column_name, type FROM system_schema.columns "
            "WHERE keyspace_name = %s AND table_name = %s",
            (config.keyspace, config.table),
        )
        existing = {row.column_name: row.type for row in rows}
        for column in definition.columns:
            if column.name not in existing:
                statement = (
                    f"ALTER TABLE {config.keyspace}.{config.table} ADD {column.name} {column.cql_type}"
                )
                session.execute(statement, timeout=60)
                executed.append(statement)
            elif existing[column.name] != column.cql_type:
                raise CassandraError(
                    f"{config.keyspace}.{config.table}.{column.name} is {existing[column.name]} in "
                    "Cassandra but "
                    f"{column.cql_type} in the contract: a type change needs a new table version"
                )
        cluster.control_connection.wait_for_schema_agreement()
        # the chart's roles (passwords from its Secrets), then the grants of the access definition
        # to the roles that exist (the local stack's)
        for statement in role_statements(config.keyspace, config.table, roles):
            session.execute(statement, timeout=60)
            executed.append(redact(statement))
        executed += grant_access(session, settings)
    finally:
        cluster.shutdown()
    return executed


def grant_access(session: Any, settings: Settings) -> list[str]:
    """Grant the access definition's Cassandra roles their permissions (``access.yaml``).

    Only roles that exist get grants (the local stack creates them; a cluster may not have them
    yet), and only on keyspaces and tables that exist (a GRANT on a missing one is an error).
    Without the definition file (an image without the chart) or without the right to read the
    roles, nothing is granted. Returns the statements run.
    """
    from userstream import access

    try:
        definition = access.for_settings(settings)
        roles = {row.role for row in session.execute("SELECT role FROM system_auth.roles", timeout=30)}
    except access.AccessError as exc:
        log.info("no Cassandra grants: %s", exc)
        return []
    except Exception as exc:  # Unauthorized / an authenticator that keeps no roles table
        log.info("no Cassandra grants: cannot read the roles (%s)", exc)
        return []
    tables: dict[str, set[str]] = {}
    for row in session.execute("SELECT keyspace_name, table_name FROM system_schema.tables", timeout=30):
        tables.setdefault(row.keyspace_name, set()).add(row.table_name)
    executed = []
    for grant in access.cql_grants(definition):
        if grant.role not in roles or grant.keyspace not in tables:
            continue
        if grant.table is not None and grant.table not in tables[grant.keyspace]:
            continue
        session.execute(grant.statement, timeout=30)
        executed.append(grant.statement)
    return executed


# --- executor side ------------------------------------------------------------------------------
SINK_REJECTED = "sink_rejected"  # transforms.SINK_REJECTED (not imported: no pyspark here)
_sessions: dict[CassandraConfig, tuple[Any, Any, Any]] = {}
_sessions_lock = threading.Lock()
_UUID_COLUMNS = frozenset(c.name for c in contract.table_definition().columns if c.type == "uuid")


def _session_for(config: CassandraConfig) -> tuple[Any, Any]:
    """One session and prepared insert per Python worker and configuration (reused across tasks)."""
    with _sessions_lock:
        cached = _sessions.get(config)
        if cached is None:
            cluster, session = connect(config)
            prepared = session.prepare(contract.insert_cql(config.keyspace, config.table))
            cached = (cluster, session, prepared)
            _sessions[config] = cached
        return cached[1], cached[2]


def shutdown_sessions() -> None:
    with _sessions_lock:
        for cluster, _, _ in _sessions.values():
            cluster.shutdown()
        _sessions.clear()


_COLUMN_NAMES = tuple(contract.table_definition().column_names)
_UUID_POSITIONS = tuple(i for i, name in enumerate(_COLUMN_NAMES) if name in _UUID_COLUMNS)


def record_parameters(record: dict[str, Any]) -> tuple[Any, ...]:
    """A valid sink record (``transforms.sink_records`` as JSON) as insert parameters in table
    order: uuids become ``uuid.UUID``; timestamps stay epoch milliseconds, which the driver binds."""
    values = [record.get(name) for name in _COLUMN_NAMES]
    for i in _UUID_POSITIONS:
        if values[i] is not None:
            values[i] = uuid.UUID(values[i])
    return tuple(values)


def is_deterministic(error: BaseException) -> bool:
    """Whether writing the same row again would fail the same way (so retrying is pointless).

    A value the driver cannot bind or serialize (``TypeError``/``ValueError``/``OverflowError``/
    ``struct.error``) or a statement Cassandra refuses as invalid (``InvalidRequest``) is; timeouts,
    unavailable replicas, overload and connection errors are not.
    """
    import struct

    from cassandra import InvalidRequest

    return isinstance(error, TypeError | ValueError | OverflowError | struct.error | InvalidRequest)


def describe_error(error: BaseException, limit: int = 500) -> str:
    return f"{type(error).__name__}: {error}"[:limit]


def write_rows(
    session: Any,
    prepared: Any,
    parameters: list[tuple[Any, ...]],
    concurrency: int,
    retries: int,
    rejected: list[tuple[int, BaseException]] | None = None,
) -> int:
    """Insert rows with bounded concurrency; retry the failed ones; return how many were stored.

    A row that fails for a deterministic reason (:func:`is_deterministic`) is not retried: with
    ``rejected`` it is appended there as ``(index in parameters, error)``, without it the call
    raises. Rows that still fail transiently after every retry raise :class:`CassandraError`.
    """
    from cassandra.concurrent import execute_concurrent_with_args

    pending = list(enumerate(parameters))
    refused = 0
    failed: list[tuple[tuple[int, tuple[Any, ...]], Any]] = []
    for attempt in range(retries + 1):
        results = execute_concurrent_with_args(
            session,
            prepared,
            [params for _, params in pending],
            concurrency=concurrency,
            raise_on_first_error=False,
        )
        failed = []
        for item, (ok, result) in zip(pending, results, strict=True):
            if ok:
                continue
            if isinstance(result, BaseException) and is_deterministic(result):
                if rejected is None:
                    raise CassandraError(f"Cassandra refused a row: {describe_error(result)}")
                log.warning("a row cannot be written (%s); it is dead-lettered", describe_error(result))
                rejected.append((item[0], result))
                refused += 1
                continue
            failed.append((item, result))
        if not failed:
            return len(parameters) - refused
        pending = [item for item, _ in failed]
        if attempt < retries:
            delay = min(0.2 * 2**attempt, 10.0)
            log.warning(
                "%d Cassandra writes failed (%s); retrying in %.1fs", len(pending), failed[0][1], delay
            )
            time.sleep(delay)
    raise CassandraError(
        f"{len(pending)} Cassandra writes failed after {retries + 1} attempts: {failed[0][1]}"
    )


SinkRejection = tuple[int, int, str, str]  # Kafka partition, offset, reason, detail


def record_writer(config: CassandraConfig, reason_key: str, chunk: int = 2_000) -> Any:
    """A ``mapPartitions`` function over JSON records (``transforms.sink_records``).

    In one pass over a partition it upserts the valid records (no ``reason_key``) and counts
    every record by reason; it yields one ``({reason or None: records}, rows stored, rejections)``
    triple. A valid record the sink cannot write for a deterministic reason is counted under
    ``sink_rejected`` and listed in rejections as ``(partition, offset, "sink_rejected", error)``
    for the driver to dead-letter, instead of failing the task on every replay.
    """

    def write_partition(
        records: Iterable[str],
    ) -> Iterator[tuple[dict[str | None, int], int, list[SinkRejection]]]:
        counts: dict[str | None, int] = {}
        stored = 0
        rejections: list[SinkRejection] = []
        buffer: list[tuple[Any, ...]] = []
        sources: list[tuple[int, int]] = []
        loads = json.loads

        def flush() -> int:
            refused: list[tuple[int, BaseException]] = []
            written = write_rows(*_session_for(config), buffer, config.concurrency, config.retries, refused)
            for index, error in refused:
                partition, offset = sources[index]
                rejections.append((partition, offset, SINK_REJECTED, describe_error(error)))
                counts[None] -= 1
                counts[SINK_REJECTED] = counts.get(SINK_REJECTED, 0) + 1
            buffer.clear()
            sources.clear()
            return written

        for text in records:
            record = loads(text)
            reason = record.get(reason_key)
            counts[reason] = counts.get(reason, 0) + 1
            if reason is not None:
                continue
            try:
                parameters = record_parameters(record)
            except (TypeError, ValueError) as exc:  # e.g. an id that is no UUID
                rejections.append(
                    (record["kafka_partition"], record["kafka_offset"], SINK_REJECTED, describe_error(exc))
                )
                counts[None] -= 1
                counts[SINK_REJECTED] = counts.get(SINK_REJECTED, 0) + 1
                continue
            buffer.append(parameters)
            sources.append((record["kafka_partition"], record["kafka_offset"]))
            if len(buffer) >= chunk:
                stored += flush()
        if buffer:
            stored += flush()
        yield {reason: n for reason, n in counts.items() if n}, stored, rejections

    return write_partition


# --- reading back (run summary, tests, benchmark) --------------------------------------------
def existing_ids(
    session: Any, config: CassandraConfig, ids: Iterable[uuid.UUID], concurrency: int = 64
) -> set[uuid.UUID]:
    from cassandra.concurrent import execute_concurrent_with_args

    statement = session.prepare(f"SELECT id FROM {config.keyspace}.{config.table} WHERE id = ?")  # noqa: S608
    wanted = [(value,) for value in ids]
    found: set[uuid.UUID] = set()
    for ok, result in execute_concurrent_with_args(session, statement, wanted, concurrency=concurrency):
        if ok:
            found.update(row.id for row in result)
    return found


def count_rows(session: Any, config: CassandraConfig) -> int:
    query = f"SELECT count(*) FROM {config.keyspace}.{config.table}"  # noqa: S608
    row = session.execute(query, timeout=120).one()
    return int(row[0])
