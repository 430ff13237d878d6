"""The one definition of userstream's principals and their grants (``charts/userstream/files/access.yaml``).

Kafka users (SCRAM-SHA-512, ACLs) and Cassandra roles (grants) are declared once; the local stack
creates them from here, and the chart tier checks that the chart's KafkaUsers carry exactly these
ACLs. Pure: parsing, validation, placeholder substitution and the ACL bindings / CQL statements
derived from it; no client and no server is touched.

Resource names hold placeholders (``${topic}``, ``${dlqTopic}``, ``${consumerGroupPrefix}``,
``${progressGroup}``, ``${keyspace}``, ``${table}``) filled from :func:`names_from_settings` (or
from the chart's values).
A principal's name is ``<prefix>-<key>``: the chart's prefix is the release's full name, the local
stack's is :data:`LOCAL_PREFIX`.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from userstream.settings import Settings

_REPO_ROOT = Path(__file__).resolve().parents[2]
ACCESS_FILE_ENV = "USERSTREAM_ACCESS_FILE"
LOCAL_PREFIX = "userstream"

# What Strimzi's KafkaUser (simple authorization) accepts, as written there (Strimzi 1.x API).
KAFKA_RESOURCE_TYPES = ("topic", "group", "cluster", "transactionalId")
KAFKA_PATTERN_TYPES = ("literal", "prefix")
KAFKA_OPERATIONS = (
    "Read",
    "Write",
    "Create",
    "Delete",
    "Alter",
    "Describe",
    "ClusterAction",
    "AlterConfigs",
    "DescribeConfigs",
    "IdempotentWrite",
    "All",
)
# CQL permissions on data resources (Apache Cassandra 5.0, doc "Security > Authorization").
CASSANDRA_RESOURCE_TYPES = ("keyspace", "table")
CASSANDRA_PERMISSIONS = ("ALL", "CREATE", "ALTER", "DROP", "SELECT", "MODIFY", "AUTHORIZE", "DESCRIBE")

_KEY_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class AccessError(ValueError):
    """The access definition is malformed, or a placeholder has no value."""


@dataclass(frozen=True)
class KafkaAcl:
    resource_type: str
    name: str
    pattern_type: str
    operations: tuple[str, ...]


@dataclass(frozen=True)
class KafkaUser:
    key: str
    description: str
    acls: tuple[KafkaAcl, ...]


@dataclass(frozen=True)
class CassandraGrant:
    resource_type: str
    name: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class CassandraRole:
    key: str
    description: str
    grants: tuple[CassandraGrant, ...]
    name: str | None = None  # the role's name; default <prefix>-<key>

    def role_name(self, prefix: str = LOCAL_PREFIX) -> str:
        return self.name or principal(self.key, prefix)


@dataclass(frozen=True)
class AccessDefinition:
    names: Mapping[str, str]
    kafka_users: Mapping[str, KafkaUser]
    cassandra_roles: Mapping[str, CassandraRole]

    def resolved(self, values: Mapping[str, str]) -> AccessDefinition:
        """The definition with every ``${placeholder}`` replaced (``values`` over ``names``)."""
        mapping = {**self.names, **values}

        def fill(text: str) -> str:
            try:
                return string.Template(text).substitute(mapping)
            except KeyError as exc:
                raise AccessError(f"no value for placeholder ${{{exc.args[0]}}} in {text!r}") from None
            except ValueError as exc:
                raise AccessError(f"bad placeholder in {text!r}: {exc}") from None

        users = {
            key: KafkaUser(
                key,
                user.description,
                tuple(
                    KafkaAcl(acl.resource_type, fill(acl.name), acl.pattern_type, acl.operations)
                    for acl in user.acls
                ),
            )
            for key, user in self.kafka_users.items()
        }
        roles = {
            key: CassandraRole(
                key,
                role.description,
                tuple(CassandraGrant(g.resource_type, fill(g.name), g.permissions) for g in role.grants),
                role.name,
            )
            for key, role in self.cassandra_roles.items()
        }
        return AccessDefinition(dict(self.names), users, roles)


def principal(key: str, prefix: str = LOCAL_PREFIX) -> str:
    """The user or role name of a definition key: ``<prefix>-<key>``."""
    return f"{prefix}-{key}"


# --- parsing ---------------------------------------------------------------------------------------
def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AccessError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise AccessError(f"{where}: expected a non-empty list")
    return value


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise AccessError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise AccessError(f"{where}: {key!r} must be lower-case letters, digits and '-' (max 31)")
    return key


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AccessError(f"{where}: a resource needs a non-empty name")
    return value


def parse_definition(text: str) -> AccessDefinition:
    """Parse and validate the YAML text of the access definition."""
    try:  # not a dependency of the images: the local stack and the tests read the file
        import yaml
    except ImportError:
        raise AccessError("reading the access definition needs PyYAML (pip install pyyaml)") from None

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AccessError(f"access definition is not valid YAML: {exc}") from None
    root = _mapping(raw, "access definition")
    unknown = set(root) - {"names", "kafka", "cassandra"}
    if unknown:
        raise AccessError(f"access definition: unknown keys {sorted(unknown)}")
    names = {str(k): str(v) for k, v in _mapping(root.get("names") or {}, "names").items()}

    users: dict[str, KafkaUser] = {}
    for key, body in _mapping(_mapping(root.get("kafka"), "kafka").get("users"), "kafka.users").items():
        where = f"kafka.users.{key}"
        body = _mapping(body, where)
        acls = []
        for index, entry in enumerate(_list(body.get("acls"), f"{where}.acls")):
            at = f"{where}.acls[{index}]"
            entry = _mapping(entry, at)
            resource = _mapping(entry.get("resource"), f"{at}.resource")
            operations = tuple(
                _choice(op, KAFKA_OPERATIONS, f"{at}.operations")
                for op in _list(entry.get("operations"), f"{at}.operations")
            )
            acls.append(
                KafkaAcl(
                    _choice(resource.get("type"), KAFKA_RESOURCE_TYPES, f"{at}.resource.type"),
                    _name(resource.get("name"), f"{at}.resource"),
                    _choice(
                        resource.get("patternType", "literal"),
                        KAFKA_PATTERN_TYPES,
                        f"{at}.resource.patternType",
                    ),
                    operations,
                )
            )
        users[_key(key, where)] = KafkaUser(key, str(body.get("description", "")), tuple(acls))

    roles: dict[str, CassandraRole] = {}
    cassandra = _mapping(root.get("cassandra"), "cassandra")
    for key, body in _mapping(cassandra.get("roles"), "cassandra.roles").items():
        where = f"cassandra.roles.{key}"
        body = _mapping(body, where)
        grants = []
        for index, entry in enumerate(_list(body.get("grants"), f"{where}.grants")):
            at = f"{where}.grants[{index}]"
            entry = _mapping(entry, at)
            resource = _mapping(entry.get("resource"), f"{at}.resource")
            resource_type = _choice(resource.get("type"), CASSANDRA_RESOURCE_TYPES, f"{at}.resource.type")
            name = _name(resource.get("name"), f"{at}.resource")
            if resource_type == "table" and name.count(".") != 1:
                raise AccessError(f"{at}.resource: a table is named <keyspace>.<table>, got {name!r}")
            permissions = tuple(
                _choice(p, CASSANDRA_PERMISSIONS, f"{at}.permissions")
                for p in _list(entry.get("permissions"), f"{at}.permissions")
            )
            grants.append(CassandraGrant(resource_type, name, permissions))
        role_name = body.get("name")
        if role_name is not None and (not isinstance(role_name, str) or not _ROLE_RE.match(role_name)):
            raise AccessError(
                f"{where}.name: {role_name!r} must be lower-case letters, digits and '_' (max 48)"
            )
        roles[_key(key, where)] = CassandraRole(
            key, str(body.get("description", "")), tuple(grants), role_name
        )
    return AccessDefinition(names, users, roles)


def access_file() -> Path:
    """``USERSTREAM_ACCESS_FILE``, else the chart's ``files/access.yaml`` in this repository."""
    explicit = os.environ.get(ACCESS_FILE_ENV)
    if explicit:
        return Path(explicit)
    return _REPO_ROOT / "charts" / "userstream" / "files" / "access.yaml"


def load_definition(path: Path | None = None) -> AccessDefinition:
    path = path or access_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessError(f"cannot read the access definition {path}: {exc.strerror}") from None
    return parse_definition(text)


def names_from_settings(settings: Settings) -> dict[str, str]:
    return {
        "topic": settings.kafka_topic,
        "dlqTopic": settings.kafka_dlq_topic,
        "progressGroup": settings.stream_progress_group,
        "keyspace": settings.cassandra_keyspace,
        "table": settings.cassandra_table,
    }


def for_settings(settings: Settings, path: Path | None = None) -> AccessDefinition:
    """The definition with the names these settings use."""
    return load_definition(path).resolved(names_from_settings(settings))


# --- what the servers are told -----------------------------------------------------------------
@dataclass(frozen=True)
class AclBinding:
    """One Kafka ACL binding (Kafka's model: one operation per binding), always ALLOW from any host."""

    principal: str
    resource_type: str
    name: str
    pattern_type: str
    operation: str

    def describe(self) -> str:
        return (
            f"User:{self.principal} ALLOW {self.operation} on {self.resource_type} "
            f"{self.name} ({self.pattern_type})"
        )


def acl_bindings(definition: AccessDefinition, prefix: str = LOCAL_PREFIX) -> list[AclBinding]:
    return [
        AclBinding(principal(user.key, prefix), acl.resource_type, acl.name, acl.pattern_type, operation)
        for user in definition.kafka_users.values()
        for acl in user.acls
        for operation in acl.operations
    ]


def cql_identifier(name: str) -> str:
    """A role name as a quoted CQL identifier (role names hold '-')."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class CqlGrant:
    """One permission of one role on a keyspace or a table (a GRANT needs the resource to exist)."""

    role: str
    permission: str
    keyspace: str
    table: str | None

    @property
    def resource(self) -> str:
        return f"TABLE {self.keyspace}.{self.table}" if self.table else f"KEYSPACE {self.keyspace}"

    @property
    def statement(self) -> str:
        return f"GRANT {self.permission} ON {self.resource} TO {cql_identifier(self.role)}"


def cql_grants(definition: AccessDefinition, prefix: str = LOCAL_PREFIX) -> list[CqlGrant]:
    """Every grant of the definition, one per permission."""
    grants = []
    for role in definition.cassandra_roles.values():
        for grant in role.grants:
            keyspace, _, table = grant.name.partition(".")
            for permission in grant.permissions:
                grants.append(CqlGrant(role.role_name(prefix), permission, keyspace, table or None))
    return grants
