"""Pure ``DataFrame -> DataFrame`` transforms of the stream: parse, validate, flatten, dead-letter.

Input frames have the Kafka source's columns (``key``, ``value`` binary, ``topic``,
``partition``, ``offset``, ``timestamp``). Nothing here reads or writes anything, so the same
functions run on a streaming frame, on a micro-batch inside ``foreachBatch`` and on a small
batch frame in a unit test.

Validation gives every record at most one reason, checked in this order:

==========================  =============================================================
``empty``                   no value (a tombstone)
``oversized``               value longer than ``stream_max_record_bytes``
``not_utf8``                value is not valid UTF-8
``malformed_json``          not a JSON object (truncated, garbage, an array, ...)
``invalid_unicode``         a ``\\uD800``-``\\uDFFF`` escape that is not half of a surrogate pair:
                            it names no character, so no UTF-8 text can hold it as sent
``wrong_type``              a field's JSON type differs from the contract (e.g. age "ten")
``unsupported_version``     ``schema_version`` is not the contract's version
``missing_field``           a required field is absent, null or blank (detail: which)
``invalid_id``              ``id`` is not a UUID
``invalid_email``           e-mail is not ``local@domain.tld`` after normalisation
``unparsable_date``         a ``format: date-time`` field (dob / registered / fetched_at) is not
                            an RFC 3339 date-time with an offset ("1990", or no offset: rejected,
                            not guessed as UTC); detail: which fields
``non_finite_number``       a numeric column would hold NaN or +/-Infinity ("NaN",
                            "Infinity", 1e309, ...); detail: which fields
``invalid_value``           a value outside its ``enum`` (e.g. ``source``) or not matching its
                            ``pattern``; detail: the field and value
``invalid_length``          a string shorter than ``minLength`` or longer than ``maxLength``
                            (e.g. ``nat`` must be two characters); detail: which fields
``out_of_range``            a number below ``minimum`` / above ``maximum``, or an integer the
                            table's 32-bit int column cannot hold (e.g. an age); detail: which
``invalid_number``          a numeric column's text is not a number (a latitude "north"; a blank
                            one is null); detail: which fields
``sink_rejected``           not found by :func:`parse`: the sink could not write the row for a
                            deterministic reason (a driver bind/serialization error, an
                            ``InvalidQueryException``); detail: the error. See
                            :func:`rejected_records`.
==========================  =============================================================

Dead letters (:func:`dead_letters`) keep the original key and at most ``max_value_bytes`` of the
original value, with headers giving the original size and the SHA-256 of the whole value, so a
record near or above the broker's size limit can still be dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from userstream import contract
from userstream.stream.cleaning import (
    EMAIL_PATTERN,
    MESSAGE_COLUMN,
    UUID_PATTERN,
    column_expression,
    field,
    parse_double,
    parse_timestamp,
)

CORRUPT_COLUMN = "_corrupt_record"
REASON = "dlq_reason"
DETAIL = "dlq_detail"
KAFKA_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
INT32 = (-(2**31), 2**31 - 1)
# a high-surrogate escape not followed by a low one, or a low one not preceded by a high one (Java
# regex syntax: Spark's rlike); "\\\\ud800" (an escaped backslash, then text) is not an escape at
# all and is told apart by the backslash before it
LONE_SURROGATE_ESCAPE = (
    r"(?i)(?<!\\)\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
    r"|(?<!\\ud[89ab][0-9a-f]{2})(?<!\\)\\ud[c-f][0-9a-f]{2}"
)

REASONS = (
    "empty",
    "oversized",
    "not_utf8",
    "malformed_json",
    "invalid_unicode",
    "wrong_type",
    "unsupported_version",
    "missing_field",
    "invalid_id",
    "invalid_email",
    "unparsable_date",
    "non_finite_number",
    "invalid_value",
    "invalid_length",
    "out_of_range",
    "invalid_number",
    "sink_rejected",
)
SINK_REJECTED = "sink_rejected"
# the schema of the rejected records the sink reports (``stream.sink.JvmSink``)
SINK_REJECTION_SCHEMA = "partition int, offset long, reason string, detail string"
DEFAULT_DLQ_MAX_VALUE_BYTES = 64 * 1024
DLQ_MAX_DETAIL_CHARS = 1000


def _parse_schema() -> T.StructType:
    schema = contract.message_spark_schema()
    return T.StructType([*schema.fields, T.StructField(CORRUPT_COLUMN, T.StringType(), True)])


def _missing(path: str) -> Column:
    column = field(path)
    node = contract.schema_node(path)
    kinds = node.get("type", "string")
    if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
        return column.isNull() | (F.trim(column.cast("string")) == "")
    return column.isNull()


@dataclass(frozen=True)
class _ParseColumns:
    """The column expressions of :func:`parse`, built once per Spark context and size limit.

    Building them issues thousands of calls into the JVM (over a second on a small machine);
    they are unresolved expressions, so every micro-batch can reuse them.
    """

    measured: tuple[Column, ...]
    message: Column
    failure: Column  # struct of REASON and DETAIL, null when the record is valid


_T = TypeVar("_T")
_per_context: dict[tuple[object, str, int], Any] = {}


def _built_once(what: str, argument: int, build: Callable[[int], _T]) -> _T:
    """``build(argument)``, cached for the active Spark context (Columns live in its JVM)."""
    from pyspark import SparkContext

    key = (SparkContext._active_spark_context, what, argument)
    if key not in _per_context:
        if len(_per_context) > 16:  # contexts stopped and recreated (tests): forget the old ones
            _per_context.clear()
        _per_context[key] = build(argument)
    return cast(_T, _per_context[key])


def build_expressions(max_record_bytes: int) -> None:
    """Build the column expressions of :func:`parse` and :func:`sink_frame` now (with the query),
    not in the first micro-batch: they are the same for every batch."""
    _built_once("parse", max_record_bytes, _build_parse_columns)
    _built_once("sink", 0, _build_sink_columns)


def parse(kafka_df: DataFrame, max_record_bytes: int) -> DataFrame:
    """Add the parsed message (``msg``), the rejection reason and its detail (null when valid)."""
    columns = _built_once("parse", max_record_bytes, _build_parse_columns)
    return (
        kafka_df.select(*columns.measured)
        .withColumn(MESSAGE_COLUMN, columns.message)
        .withColumn("_failure", columns.failure)
        .select(*KAFKA_COLUMNS, MESSAGE_COLUMN, f"_failure.{REASON}", f"_failure.{DETAIL}")
    )


def _build_parse_columns(max_record_bytes: int) -> _ParseColumns:
    text = F.col("value").cast("string")
    measured = (
        *[F.col(name) for name in KAFKA_COLUMNS],
        F.octet_length("value").alias("_bytes"),
        F.expr("is_valid_utf8(CAST(value AS STRING))").alias("_utf8"),
    )
    # the JSON reader sees only values small enough and valid UTF-8, and parses each one once
    small_utf8 = (F.col("_bytes") <= max_record_bytes) & F.col("_utf8")
    message = F.when(
        small_utf8,
        F.from_json(
            text, _parse_schema(), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
        ),
    )
    # one CASE over the checks in order: a valid record evaluates each check once, a rejected one
    # stops at its first failure, and only that failure's detail is computed
    first_failure: Column = F.lit(None).cast(f"struct<{REASON}: string, {DETAIL}: string>")
    for name, failed, why in reversed(_checks(max_record_bytes)):
        failure = F.struct(F.lit(name).alias(REASON), why.cast("string").alias(DETAIL))
        first_failure = F.when(failed, failure).otherwise(first_failure)
    return _ParseColumns(measured, message, first_failure)


def _checks(max_record_bytes: int) -> list[tuple[str, Column, Column]]:
    """(reason, failed, detail) of every check, in order, over :func:`parse`'s measured columns and
    parsed message."""
    text = F.col("value").cast("string")
    # a value the reader took without complaint is a JSON object; only the others (no result, or a
    # corrupt record: malformed JSON or a wrong field type) are looked at a second time
    is_object = F.when(
        F.col(MESSAGE_COLUMN).isNotNull() & field(CORRUPT_COLUMN).isNull(), F.lit(True)
    ).otherwise(F.expr("json_object_keys(CAST(value AS STRING))").isNotNull())
    # comma-separated names of the failing paths ("" when none): concat_ws skips the nulls
    missing = F.concat_ws(",", *[F.when(_missing(path), F.lit(path)) for path in contract.required_paths()])
    date_paths = [path for path, node in contract.paths_with("format") if node["format"] == "date-time"]
    bad_dates = F.concat_ws(
        ",",
        *[
            F.when(field(path).isNotNull() & parse_timestamp(field(path)).isNull(), F.lit(path))
            for path in date_paths
        ],
    )
    # NaN and +/-Infinity are not numbers the table can store (the driver refuses to bind them).
    # The JSON reader gives a string field the text "NaN" for the string "NaN", and the quoted
    # text "\"NaN\"" / "\"Infinity\"" for the bare tokens NaN, Infinity and 1e309: both are read.
    numeric_sources = [
        source
        for column in contract.table_definition().columns
        if column.type in ("double", "float")
        for source in column.sources
    ]
    non_finite = F.concat_ws(
        ",", *[F.when(_non_finite(_as_double(field(path))), F.lit(path)) for path in numeric_sources]
    )
    email = F.lower(F.trim(field("user.email")))
    record_id = F.lower(F.trim(field("id")))
    bad_value, bad_length, bad_range, bad_number = _keyword_checks(numeric_sources)
    checks: list[tuple[str, Column, Column]] = [
        ("empty", F.col("value").isNull(), F.lit("message has no value")),
        (
            "oversized",
            F.col("_bytes") > max_record_bytes,
            F.format_string("%d bytes > limit %d", F.col("_bytes"), F.lit(max_record_bytes)),
        ),
        ("not_utf8", ~F.col("_utf8"), F.lit("value is not valid UTF-8")),
        ("malformed_json", ~is_object, F.lit("value is not a JSON object")),
        (
            "invalid_unicode",
            # the regex (lookbehinds at every position) costs more than the JSON parse: only a
            # value with a surrogate's escape (\ud800-\udfff, hex digits in either case) can fail
            # it, and two substring searches find those
            (text.contains("\\ud") | text.contains("\\uD")) & text.rlike(LONE_SURROGATE_ESCAPE),
            F.lit("an escape of an unpaired UTF-16 surrogate (\\uD800-\\uDFFF)"),
        ),
        (
            "wrong_type",
            field(CORRUPT_COLUMN).isNotNull(),
            F.lit("a field's JSON type does not match user_message.v1"),
        ),
        (
            "unsupported_version",
            field("schema_version").isNotNull()
            & (field("schema_version") != F.lit(contract.MESSAGE_SCHEMA_VERSION)),
            F.format_string("schema_version %d", field("schema_version")),
        ),
        ("missing_field", missing != "", missing),
        ("invalid_id", ~record_id.rlike(UUID_PATTERN), F.format_string("id %s", record_id)),
        ("invalid_email", ~email.rlike(EMAIL_PATTERN), F.format_string("email %s", email)),
        ("unparsable_date", bad_dates != "", bad_dates),
        ("non_finite_number", non_finite != "", non_finite),
        ("invalid_value", bad_value != "", bad_value),
        ("invalid_length", bad_length != "", bad_length),
        ("out_of_range", bad_range != "", bad_range),
        ("invalid_number", bad_number != "", bad_number),
    ]
    return checks


def _keyword_checks(numeric_sources: list[str]) -> tuple[Column, Column, Column, Column]:
    """Comma-separated failures ("" when none) of enum/pattern, minLength/maxLength,
    minimum/maximum (and the int columns' range) and the numeric columns' text, from the schema."""

    def failing(parts: list[Column]) -> Column:
        return F.concat_ws(",", *parts) if parts else F.lit("")

    values: list[Column] = []
    for path, node in contract.paths_with("enum"):
        allowed = node["enum"]
        value = field(path)
        values.append(
            F.when(
                value.isNotNull() & ~value.cast("string").isin(*[str(item) for item in allowed]),
                F.format_string(f"{path} %s (not one of {', '.join(map(str, allowed))})", value),
            )
        )
    for path, node in contract.paths_with("pattern"):
        value = field(path)
        values.append(
            F.when(
                value.isNotNull() & ~value.rlike(node["pattern"]),
                F.format_string(f"{path} %s (does not match {node['pattern']})", value),
            )
        )
    lengths: list[Column] = []
    for path, node in contract.paths_with("minLength"):
        lengths.append(F.when(F.char_length(field(path)) < F.lit(int(node["minLength"])), F.lit(path)))
    for path, node in contract.paths_with("maxLength"):
        lengths.append(F.when(F.char_length(field(path)) > F.lit(int(node["maxLength"])), F.lit(path)))
    ranges: dict[str, Column] = {}
    int_sources = [
        source
        for column in contract.table_definition().columns
        if column.type == "int"
        for source in column.sources
        if not source.startswith("$")
    ]
    bounds: dict[str, tuple[float | None, float | None]] = {path: INT32 for path in int_sources}
    for keyword in ("minimum", "maximum"):
        for path, node in contract.paths_with(keyword):
            low, high = bounds.get(path, (None, None))
            if keyword == "minimum":
                low = node[keyword] if low is None else max(low, node[keyword])
            else:
                high = node[keyword] if high is None else min(high, node[keyword])
            bounds[path] = (low, high)
    for path, (low, high) in bounds.items():
        number = field(path).cast("string").try_cast("decimal(38,6)")
        outside = F.lit(False)
        if low is not None:
            outside = outside | (number < F.lit(low))
        if high is not None:
            outside = outside | (number > F.lit(high))
        ranges[path] = F.when(F.coalesce(outside, F.lit(False)), F.lit(path))
    numbers = [
        F.when(
            F.trim(field(path).cast("string")).isNotNull()
            & (F.trim(field(path).cast("string")) != "")
            & parse_double(field(path)).isNull()
            & _as_double(field(path)).isNull(),
            F.lit(path),
        )
        for path in numeric_sources
    ]
    return failing(values), failing(lengths), failing(list(ranges.values())), failing(numbers)


def _as_double(value: Column) -> Column:
    text = F.regexp_replace(F.trim(value.cast("string")), r'^"(.*)"$', "$1")
    return F.trim(text).try_cast("double")


def _non_finite(value: Column) -> Column:
    infinity = F.lit(float("inf"))
    return F.coalesce(F.isnan(value) | (value == infinity) | (value == -infinity), F.lit(False))


def valid_rows(parsed: DataFrame) -> DataFrame:
    """The clean, flat table rows of the valid records (columns and types of the table)."""
    definition = contract.table_definition()
    return parsed.where(F.col(REASON).isNull()).select(
        *[column_expression(column) for column in definition.columns]
    )


def sink_frame(parsed: DataFrame) -> DataFrame:
    """Every record for the Java sink (``stream.sink.JvmSink``), one row each: Kafka ``partition``
    and ``offset``, the rejection reason (``dlq_reason``, null when valid) and its detail
    (``dlq_detail``), then the table's columns in table order (null for rejected records): the
    values of :func:`valid_rows`, timestamps as epoch milliseconds.

    The columns of :func:`processing_time_columns` are null here: the writer binds the micro-batch's
    processing time to them. A ``current_timestamp()`` in the plan would become a different literal
    in every micro-batch, so Spark would generate and compile new code for every batch, and the JIT
    would start again from interpreted code each time."""
    return parsed.select(*_built_once("sink", 0, _build_sink_columns))


def processing_time_columns() -> list[str]:
    """The table's columns that hold the time the stream processed the record."""
    return [
        column.name
        for column in contract.table_definition().columns
        if column.sources == ("$processing_time",)
    ]


def _build_sink_columns(_: int) -> tuple[Column, ...]:
    definition = contract.table_definition()
    valid = F.col(REASON).isNull()
    columns = [F.col("partition"), F.col("offset"), F.col(REASON), F.col(DETAIL)]
    bound_by_writer = set(processing_time_columns())
    for column in definition.columns:
        if column.name in bound_by_writer:
            columns.append(F.lit(None).cast("long").alias(column.name))
            continue
        value = column_expression(column)
        if column.type == "timestamp":
            value = F.unix_millis(value)
        columns.append(F.when(valid, value).alias(column.name))
    return tuple(columns)


def rejected_records(kafka_df: DataFrame, rejections: DataFrame) -> DataFrame:
    """The records of ``kafka_df`` that ``rejections`` (:data:`SINK_REJECTION_SCHEMA`) names by
    ``partition`` and ``offset`` (the stream reads one topic, so they name a record), with their
    reason and detail: what :func:`dead_letters` takes, without parsing anything again."""
    found = F.broadcast(
        rejections.select("partition", "offset", F.col("reason").alias(REASON), F.col("detail").alias(DETAIL))
    )
    return kafka_df.join(found, ["partition", "offset"], "inner")


def dead_letters(parsed: DataFrame, max_value_bytes: int = DEFAULT_DLQ_MAX_VALUE_BYTES) -> DataFrame:
    """Rejected records for Spark's Kafka sink: original key, the reason in headers, and at most
    ``max_value_bytes`` of the original value (headers ``dlq.value.bytes``,
    ``dlq.value.sha256`` and ``dlq.value.truncated`` describe the whole value)."""

    def header(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("key"), value.cast("string").cast("binary").alias("value"))

    size = F.octet_length(F.col("value"))
    truncated = F.coalesce(size > F.lit(max_value_bytes), F.lit(False))
    value = F.when(truncated, F.substring(F.col("value"), 1, max_value_bytes)).otherwise(F.col("value"))
    detail = F.substring(F.coalesce(F.col(DETAIL), F.lit("")), 1, DLQ_MAX_DETAIL_CHARS)
    return parsed.where(F.col(REASON).isNotNull()).select(
        F.col("key"),
        value.alias("value"),
        F.array(
            header("dlq.reason", F.col(REASON)),
            header("dlq.detail", detail),
            header("dlq.source.topic", F.col("topic")),
            header("dlq.source.partition", F.col("partition")),
            header("dlq.source.offset", F.col("offset")),
            header("dlq.source.timestamp", F.date_format(F.col("timestamp"), "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")),
            header("dlq.value.bytes", F.coalesce(size.cast("string"), F.lit(""))),
            header("dlq.value.sha256", F.coalesce(F.sha2(F.col("value"), 256), F.lit(""))),
            header("dlq.value.truncated", F.when(truncated, F.lit("true")).otherwise(F.lit("false"))),
        ).alias("headers"),
        F.col(REASON).alias(REASON),
    )


def dead_letter_sink_frame(dead: DataFrame) -> DataFrame:
    """Only the columns Spark's Kafka sink accepts."""
    return dead.select("key", "value", "headers")
