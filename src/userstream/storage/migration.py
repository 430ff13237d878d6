"""The idempotent Cassandra migration and the least-privilege roles.

The keyspace (replication from ``cassandra_replication``) and the table (DDL derived from the
contract) are created with ``IF NOT EXISTS``; columns the contract gained since are added with
``ALTER TABLE``, so the migration can run at every start.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from userstream import contract
from userstream.settings import Settings
from userstream.storage.client import CassandraConfig, CassandraError, connect_until

log = logging.getLogger(__name__)


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
