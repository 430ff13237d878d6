"""The versioned data contract: one schema for the topic's messages, one for the table.

``user_message.v1.json`` (JSON Schema) describes every message value on the users topic. The
Spark parser's StructType and the list of required fields the stream checks are derived from it.

``created_users.v1.json`` describes the Cassandra table. The CQL DDL, the insert statement and
the Spark types the stream casts its row columns to are derived from it; ``created_users.v1.cql``
(:data:`TABLE_CQL_FILE`) is the generated DDL kept in the repository for review and checked by a
unit test.

pyspark is imported lazily so that the ingestion process does not need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

MESSAGE_SCHEMA_VERSION = 1
MESSAGE_SCHEMA_FILE = f"user_message.v{MESSAGE_SCHEMA_VERSION}.json"
TABLE_FILE = "created_users.v1.json"
TABLE_CQL_FILE = "created_users.v1.cql"

# logical type -> (CQL type, Spark SQL type name)
LOGICAL_TYPES: dict[str, tuple[str, str]] = {
    "uuid": ("uuid", "string"),
    "text": ("text", "string"),
    "int": ("int", "int"),
    "bigint": ("bigint", "bigint"),
    "double": ("double", "double"),
    "timestamp": ("timestamp", "timestamp"),
}

# JSON Schema keywords of user_message.v1.json the stream enforces (its "$comment" says how), and
# the ones that only annotate; a unit test fails when the schema uses any other keyword
ENFORCED_KEYWORDS = frozenset(
    {"type", "required", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "format"}
)
ANNOTATION_KEYWORDS = frozenset({"$schema", "$id", "$comment", "title", "description"})

# path prefixes of stream metadata (not fields of the message)
METADATA_SOURCES = ("$kafka.timestamp", "$kafka.partition", "$kafka.offset", "$processing_time")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def message_schema() -> dict[str, Any]:
    """The JSON Schema of a message value (a fresh parse is cached; do not mutate it)."""
    schema: dict[str, Any] = json.loads(_read(MESSAGE_SCHEMA_FILE))
    return schema


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    sources: tuple[str, ...]
    clean: str

    @property
    def cql_type(self) -> str:
        return LOGICAL_TYPES[self.type][0]

    @property
    def spark_type_name(self) -> str:
        return LOGICAL_TYPES[self.type][1]


@dataclass(frozen=True)
class TableDefinition:
    name: str
    version: int
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


@cache
def table_definition() -> TableDefinition:
    raw = json.loads(_read(TABLE_FILE))
    columns = []
    for item in raw["columns"]:
        if item["type"] not in LOGICAL_TYPES:
            raise ValueError(f"{TABLE_FILE}: column {item['name']!r} has unknown type {item['type']!r}")
        columns.append(Column(item["name"], item["type"], tuple(item["from"]), item["clean"]))
    table = TableDefinition(raw["name"], int(raw["version"]), tuple(raw["primary_key"]), tuple(columns))
    missing = set(table.primary_key) - set(table.column_names)
    if missing:
        raise ValueError(f"{TABLE_FILE}: primary key columns {sorted(missing)} are not columns")
    return table


# --- message schema helpers ----------------------------------------------------------------------
def _node_types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type", "string")
    return [kind] if isinstance(kind, str) else list(kind)


def schema_node(path: str) -> dict[str, Any]:
    """The JSON Schema node of a dotted field path such as ``user.name.first``."""
    node = message_schema()
    for part in path.split("."):
        properties = node.get("properties", {})
        if part not in properties:
            raise KeyError(f"{path!r} is not a field of {MESSAGE_SCHEMA_FILE}")
        node = properties[part]
    return node


def paths_with(keyword: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (dotted path, node) of the message schema whose node has ``keyword``, in file order."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, child in node.get("properties", {}).items():
            if keyword in child:
                found.append((f"{prefix}{name}", child))
            walk(child, f"{prefix}{name}.")

    walk(message_schema(), "")
    return found


def required_paths() -> list[str]:
    """Every dotted path the schema requires (a child is required only under a required parent)."""
    found: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name in node.get("required", []):
            path = f"{prefix}{name}"
            found.append(path)
            child = node.get("properties", {}).get(name, {})
            if "object" in _node_types(child):
                walk(child, f"{path}.")

    walk(message_schema(), "")
    return found


def spark_type_of(node: dict[str, Any]) -> DataType:
    """Map a JSON Schema node to the Spark type the parser reads it as.

    A union such as ``["integer", "string"]`` is read as a string: Spark's JSON reader keeps
    the raw text of a number in a string field, so ``12345`` and ``"AB1 2CD"`` both parse.
    """
    from pyspark.sql import types as T

    kinds = [kind for kind in _node_types(node) if kind != "null"]
    if kinds == ["object"]:
        return T.StructType(
            [T.StructField(name, spark_type_of(child), True) for name, child in node["properties"].items()]
        )
    if kinds == ["integer"]:
        return T.LongType()
    if kinds == ["number"]:
        return T.DoubleType()
    if kinds == ["boolean"]:
        return T.BooleanType()
    if kinds == ["array"]:
        return T.ArrayType(spark_type_of(node.get("items", {})), True)
    return T.StringType()


def message_spark_schema() -> StructType:
    """The StructType the stream parses message values with."""
    from pyspark.sql import types as T

    struct = spark_type_of(message_schema())
    assert isinstance(struct, T.StructType)
    return struct


# --- table helpers ------------------------------------------------------------------------------
def create_table_cql(keyspace: str, table: str | None = None) -> str:
    definition = table_definition()
    name = table or definition.name
    lines = [f"    {column.name} {column.cql_type}," for column in definition.columns]
    lines.append(f"    PRIMARY KEY (({', '.join(definition.primary_key)}))")
    body = "\n".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {keyspace}.{name} (\n{body}\n)"


def create_keyspace_cql(keyspace: str, replication: dict[str, str]) -> str:
    options = ", ".join(f"'{key}': '{value}'" for key, value in replication.items())
    return f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{options}}}"


def insert_cql(keyspace: str, table: str | None = None) -> str:
    definition = table_definition()
    columns = ", ".join(definition.column_names)
    markers = ", ".join("?" for _ in definition.columns)
    target = f"{keyspace}.{table or definition.name}"
    return f"INSERT INTO {target} ({columns}) VALUES ({markers})"  # noqa: S608


def render_reference_cql() -> str:
    header = (
        "-- Generated from created_users.v1.json by userstream.contract.render_reference_cql();\n"
        "-- a unit test fails when the two disagree. The keyspace is configurable at migration.\n"
    )
    return header + create_table_cql("spark_streams") + ";\n"
