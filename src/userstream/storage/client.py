"""The Cassandra client: connection settings, a connection (with a deadline for a cluster that does
not accept CQL yet) and the read-back helpers of the run summary, the tests and the benchmark."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
    concurrency: int = 128
    write_consistency: str = "LOCAL_QUORUM"
    read_consistency: str = "LOCAL_QUORUM"
    retry_deadline_seconds: float = 600.0

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
            write_consistency=settings.cassandra_write_consistency,
            read_consistency=settings.cassandra_read_consistency,
            retry_deadline_seconds=settings.cassandra_retry_deadline_seconds,
        )


def connect(config: CassandraConfig, keyspace: str | None = None) -> tuple[Any, Any]:
    """A (Cluster, Session) pair; the caller shuts the cluster down. Its statements run at the read
    consistency level unless they set their own (the stream writes from the JVM, not from here)."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    for noisy in ("cassandra.cluster", "cassandra.connection", "cassandra.pool"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=config.local_dc)),
        request_timeout=30,
        consistency_level=ConsistencyLevel.name_to_value[config.read_consistency],
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


def connect_until(
    config: CassandraConfig,
    wait_seconds: float,
    *,
    connector: Callable[[CassandraConfig], tuple[Any, Any]] = connect,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 10.0,
    first_interval: float = 0.5,
) -> tuple[Any, Any]:
    """Connect, retrying for up to ``wait_seconds`` while Cassandra does not accept CQL yet (a new
    datacenter takes minutes, a restart seconds): capped exponential backoff from
    ``first_interval`` to ``interval``; the last error is raised once the deadline has passed."""
    deadline = clock() + wait_seconds
    attempt = 0
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
            sleep(min(backoff_seconds(attempt, first_interval, interval), left))
            attempt += 1


def backoff_seconds(attempt: int, first: float, cap: float) -> float:
    """Capped exponential backoff: ``first * 2**attempt``, at most ``cap``."""
    return float(min(cap, first * 2 ** min(attempt, 30)))


def read_consistency(config: CassandraConfig) -> Any:
    from cassandra import ConsistencyLevel

    return ConsistencyLevel.name_to_value[config.read_consistency]


# --- reading back (run summary, tests, benchmark) --------------------------------------------
def existing_ids(
    session: Any, config: CassandraConfig, ids: Iterable[uuid.UUID], concurrency: int = 64
) -> set[uuid.UUID]:
    from cassandra.concurrent import execute_concurrent_with_args

    statement = session.prepare(f"SELECT id FROM {config.keyspace}.{config.table} WHERE id = ?")  # noqa: S608
    statement.consistency_level = read_consistency(config)
    wanted = [(value,) for value in ids]
    found: set[uuid.UUID] = set()
    for ok, result in execute_concurrent_with_args(session, statement, wanted, concurrency=concurrency):
        if ok:
            found.update(row.id for row in result)
    return found


def count_rows(session: Any, config: CassandraConfig) -> int:
    from cassandra.query import SimpleStatement

    query = f"SELECT count(*) FROM {config.keyspace}.{config.table}"  # noqa: S608
    statement = SimpleStatement(query, consistency_level=read_consistency(config))
    row = session.execute(statement, timeout=120).one()
    return int(row[0])
