"""Cleaning rules: how each table column is computed from the parsed message, as Spark Columns.

The table definition (``contract/created_users.v1.json``) names one rule per column; this module
is the one place that says what a rule does. Rules only normalise (trim, case, digits, ISO
timestamps); deciding whether a record is valid is :mod:`userstream.stream.transforms`' job.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column
from pyspark.sql import functions as F

from userstream.contract import Column as ContractColumn

# a lower-cased, trimmed e-mail: one '@', no blanks, a dot in the domain
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# JSON Schema's "date-time" format is RFC 3339's date-time (section 5.6): a full date, a time with
# seconds and an offset. Without the offset the instant is unknown, so "1990", "1990-01-01" and
# "1990-01-01T00:00:00" are not date-times (Spark's own parsing would take them as UTC).
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
MESSAGE_COLUMN = "msg"


def field(path: str) -> Column:
    """The parsed message field at a dotted contract path (or stream metadata)."""
    metadata = {
        "$kafka.timestamp": F.col("timestamp"),
        "$kafka.partition": F.col("partition").cast("int"),
        "$kafka.offset": F.col("offset").cast("bigint"),
        "$processing_time": F.current_timestamp(),
    }
    if path in metadata:
        return metadata[path]
    return F.col(f"{MESSAGE_COLUMN}.{path}")


def blank_to_null(column: Column) -> Column:
    trimmed = F.trim(column)
    return F.when(trimmed == "", F.lit(None)).otherwise(trimmed)


def parse_timestamp(column: Column) -> Column:
    """An RFC 3339 date-time to a timestamp; null (never an error, even in ANSI mode) for anything
    else: other text, a date without time or offset, or an impossible date such as month 13."""
    return F.when(column.rlike(DATE_TIME_PATTERN), F.try_to_timestamp(column))


def parse_double(column: Column) -> Column:
    """Text (or a JSON number's text) to a double; null when blank or not a number."""
    return blank_to_null(column.cast("string")).try_cast("double")


def digits(column: Column) -> Column:
    """Only the digits of a phone number, kept as text (leading zeros matter)."""
    return blank_to_null(F.regexp_replace(column, r"[^0-9]", ""))


def _join(separator: str, parts: list[Column]) -> Column:
    return blank_to_null(F.concat_ws(separator, *[blank_to_null(part.cast("string")) for part in parts]))


def _address(parts: list[Column]) -> Column:
    number, street, *rest = parts
    return _join(", ", [_join(" ", [number, street]), *rest])


_SINGLE: dict[str, Callable[[Column], Column]] = {
    "none": lambda c: c,
    "uuid": lambda c: F.lower(F.trim(c)),
    "trim": blank_to_null,
    "lower": lambda c: F.lower(blank_to_null(c)),
    "upper": lambda c: F.upper(blank_to_null(c)),
    "email": lambda c: F.lower(blank_to_null(c)),
    "digits": digits,
    "timestamp": parse_timestamp,
    "int": lambda c: c.try_cast("int"),
    "double": parse_double,
}
_MULTI: dict[str, Callable[[list[Column]], Column]] = {
    "join_space": lambda parts: _join(" ", parts),
    "address": _address,
}
RULES = frozenset(_SINGLE) | frozenset(_MULTI)


def column_expression(column: ContractColumn) -> Column:
    """The Spark expression of one table column, cast to its contract type."""
    parts = [field(path) for path in column.sources]
    if column.clean in _MULTI:
        expression = _MULTI[column.clean](parts)
    elif column.clean in _SINGLE:
        if len(parts) != 1:
            raise ValueError(f"rule {column.clean!r} of column {column.name!r} takes one source field")
        expression = _SINGLE[column.clean](parts[0])
    else:
        raise ValueError(f"column {column.name!r}: unknown cleaning rule {column.clean!r}")
    return expression.cast(column.spark_type_name).alias(column.name)
