"""Parsing, validation, cleaning and dead-lettering on small batch frames shaped like Kafka rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from userstream import contract
from userstream.contract.ids import record_id
from userstream.ingest.sources.synthetic import generate_user
from userstream.stream import transforms

KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
MAX = 4096


def envelope(document: Any, **overrides: Any) -> dict[str, Any]:
    message = {
        "schema_version": 1,
        "id": str(record_id(document)),
        "source": "synthetic",
        "batch_id": "batch-1",
        "fetched_at": "2025-03-04T05:06:07.000Z",
        "user": document,
    }
    message.update(overrides)
    return message


def encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def frame(spark, values: list[bytes | None]):
    stamp = datetime(2025, 3, 4, 5, 6, 8, tzinfo=UTC)
    rows = [(b"k%d" % i, value, "users", i % 2, 100 + i, stamp) for i, value in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def reasons(spark, values: list[bytes | None]) -> list[tuple[str | None, str | None]]:
    parsed = transforms.parse(frame(spark, values), MAX)
    return [(r.dlq_reason, r.dlq_detail) for r in parsed.orderBy("offset").collect()]


def user(index: int = 1, **changes: Any) -> dict[str, Any]:
    document = generate_user(42, index)
    for path, value in changes.items():
        node = document
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return document


def test_a_valid_message_is_flattened_and_normalised(spark) -> None:
    document = user(
        3,
        email="  Jane.DOE@Example.COM ",
        phone="(272) 790-0888",
        cell="0176-5047011",
        name__first="  Zoë ",
        location__postcode=90210,
    )
    document["location"]["street"] = {"number": 12, "name": " Rue de la Paix "}
    parsed = transforms.parse(frame(spark, [encode(envelope(document))]), MAX)
    assert [r.dlq_reason for r in parsed.collect()] == [None]
    row = transforms.valid_rows(parsed).collect()[0].asDict()
    assert row["id"] == str(record_id(document))
    assert row["first_name"] == "Zoë"
    assert row["email"] == "jane.doe@example.com"
    assert row["phone"] == "2727900888"
    assert row["cell"] == "01765047011"  # digits kept as text: the leading zero stays
    assert row["postcode"] == "90210"
    assert row["street"] == "12 Rue de la Paix"
    assert row["address"].startswith("12 Rue de la Paix, ")
    assert row["nationality"] == document["nat"]
    assert row["gender"] == document["gender"]
    assert row["kafka_partition"] == 0
    assert row["kafka_offset"] == 100
    assert row["batch_id"] == "batch-1"
    assert row["source"] == "synthetic"
    assert row["ingested_at"] == datetime(2025, 3, 4, 5, 6, 7)  # session time zone is UTC
    assert row["published_at"] == datetime(2025, 3, 4, 5, 6, 8)
    assert row["processed_at"] is not None
    expected_dob = datetime.strptime(document["dob"]["date"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert row["dob"] == expected_dob
    assert row["age"] == document["dob"]["age"]
    assert isinstance(row["latitude"], float)


def test_string_postcodes_and_non_ascii_survive(spark) -> None:
    document = user(4, location__postcode=" AB1 2CD ", name__last="Ó Súilleabháin")
    row = transforms.valid_rows(transforms.parse(frame(spark, [encode(envelope(document))]), MAX)).first()
    assert row is not None
    assert row["postcode"] == "AB1 2CD"
    assert row["last_name"] == "Ó Súilleabháin"


def test_optional_fields_may_be_absent(spark) -> None:
    document = user(5)
    del document["cell"], document["id"], document["location"]["coordinates"]
    document["name"].pop("title")
    row = transforms.valid_rows(transforms.parse(frame(spark, [encode(envelope(document))]), MAX)).first()
    assert row is not None
    assert row["cell"] is None
    assert row["latitude"] is None
    assert row["title"] is None


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (None, "empty", "message has no value"),
        (b"", "malformed_json", None),
        (b'{"schema_version": 1, "id": "x"', "malformed_json", None),  # truncated
        (b"[1, 2, 3]", "malformed_json", None),
        (b"not json at all", "malformed_json", None),
        (b"\xff\xfe\xfd{}", "not_utf8", None),
        (b"{" + b" " * MAX + b"}", "oversized", f"{MAX + 2} bytes > limit {MAX}"),
    ],
)
def test_unreadable_values_are_rejected(spark, value, reason, detail) -> None:
    [(got_reason, got_detail)] = reasons(spark, [value])
    assert got_reason == reason
    if detail:
        assert got_detail == detail


def test_contract_violations_are_rejected_with_the_reason(spark) -> None:
    values = [
        encode(envelope(user(10, dob__age="thirty"))),
        encode(envelope(user(11, name="Just A String"))),
        encode(envelope(user(12, email=KeyError))),
        encode(envelope(user(13, name__last="   "))),
        encode({k: v for k, v in envelope(user(14)).items() if k != "user"}),
        encode(envelope(user(15), id="not-a-uuid")),
        encode(envelope(user(16, email="jane.doe.example.com"))),
        encode(envelope(user(17, email="jane@doe"))),
        encode(envelope(user(18, dob__date="31/02/1990"))),
        encode(envelope(user(19, registered__date="2020-13-45T99:00:00Z"))),
        encode(envelope(user(20), schema_version=2)),
        encode(envelope(user(21), fetched_at="yesterday")),
    ]
    assert reasons(spark, values) == [
        ("wrong_type", "a field's JSON type does not match user_message.v1"),
        ("wrong_type", "a field's JSON type does not match user_message.v1"),
        ("missing_field", "user.email"),
        ("missing_field", "user.name.last"),
        ("missing_field", ",".join(p for p in contract.required_paths() if p.startswith("user"))),
        ("invalid_id", "id not-a-uuid"),
        ("invalid_email", "email jane.doe.example.com"),
        ("invalid_email", "email jane@doe"),
        ("unparsable_date", "user.dob.date"),
        ("unparsable_date", "user.registered.date"),
        ("unsupported_version", "schema_version 2"),
        ("unparsable_date", "fetched_at"),
    ]


def test_one_bad_record_does_not_affect_the_others(spark) -> None:
    good = [encode(envelope(user(i))) for i in range(30, 36)]
    values = [*good[:3], b"{broken", *good[3:], b"\xc3\x28"]
    parsed = transforms.parse(frame(spark, values), MAX)
    rows = transforms.valid_rows(parsed).collect()
    dead = transforms.dead_letters(parsed).collect()
    assert len(rows) == 6
    assert {r["id"] for r in rows} == {str(record_id(user(i))) for i in range(30, 36)}
    assert [r["dlq_reason"] for r in dead] == ["malformed_json", "not_utf8"]


def test_dead_letters_keep_the_original_payload_and_say_where_it_came_from(spark) -> None:
    payload = b"\xff not utf-8 \xfe"
    dead = transforms.dead_letters(transforms.parse(frame(spark, [encode(envelope(user(40))), payload]), MAX))
    sink = transforms.dead_letter_sink_frame(dead)
    assert sink.columns == ["key", "value", "headers"]
    [letter] = sink.collect()
    assert bytes(letter["value"]) == payload
    assert bytes(letter["key"]) == b"k1"
    headers = {h["key"]: bytes(h["value"]).decode() for h in letter["headers"]}
    assert headers["dlq.reason"] == "not_utf8"
    assert headers["dlq.source.topic"] == "users"
    assert headers["dlq.source.partition"] == "1"
    assert headers["dlq.source.offset"] == "101"
    assert headers["dlq.source.timestamp"].startswith("2025-03-04T05:06:08")


def test_every_reason_is_documented() -> None:
    for reason in transforms.REASONS:
        assert f"``{reason}``" in (transforms.__doc__ or "")


def test_the_sink_frame_carries_the_source_the_reason_and_only_the_valid_rows(spark) -> None:
    document = user(50)
    parsed = transforms.parse(frame(spark, [encode(envelope(document)), b"{broken"]), MAX)
    valid, rejected = [row.asDict() for row in transforms.sink_frame(parsed).collect()]
    names = contract.table_definition().column_names
    # the Java writer's layout
    assert list(valid) == ["partition", "offset", "dlq_reason", "dlq_detail", *names]
    assert rejected["dlq_reason"] == "malformed_json"
    assert rejected["dlq_detail"] == "value is not a JSON object"
    assert rejected["offset"] == valid["offset"] + 1
    assert all(rejected[name] is None for name in names)
    assert valid["dlq_reason"] is None
    row = transforms.valid_rows(parsed).first()
    assert row is not None
    for column in contract.table_definition().columns:
        expected = row[column.name]
        if column.type == "timestamp" and expected is not None:
            expected = round(expected.replace(tzinfo=UTC).timestamp() * 1000)
        if column.name == "processed_at":
            # the writer binds the micro-batch's time: no per-batch literal in the plan
            assert valid[column.name] is None
            continue
        assert valid[column.name] == expected, column.name
    assert transforms.processing_time_columns() == ["processed_at"]


@pytest.mark.parametrize(
    "latitude",
    ["NaN", "Infinity", "-Infinity", "1e309", " nan "],
)
def test_non_finite_numbers_are_rejected_with_the_field(spark, latitude) -> None:
    document = user(60)
    document["location"]["coordinates"]["latitude"] = latitude
    [(reason, detail)] = reasons(spark, [encode(envelope(document))])
    assert (reason, detail) == ("non_finite_number", "user.location.coordinates.latitude")


def test_non_finite_json_number_tokens_are_rejected(spark) -> None:
    # unquoted tokens: what a non-Python producer (or json.dumps(float("nan"))) writes
    good = encode(envelope(user(61)))
    values = [
        good,
        encode(envelope(user(62, location__coordinates__longitude=float("nan")))),  # NaN token
        encode(envelope(user(63))).replace(b'"latitude": "', b'"latitude": 1e309, "_": "'),
        encode(envelope(user(64))).replace(b'"latitude": "', b'"latitude": -Infinity, "_": "'),
    ]
    got = reasons(spark, values)
    assert got[0] == (None, None)
    assert got[1] == ("non_finite_number", "user.location.coordinates.longitude")
    assert got[2] == ("non_finite_number", "user.location.coordinates.latitude")
    assert got[3] == ("non_finite_number", "user.location.coordinates.latitude")


def test_the_records_the_sink_reported_become_dead_letters_without_a_second_parse(spark) -> None:
    values = [encode(envelope(user(i))) for i in range(70, 73)] + [b"{broken"]
    kafka = frame(spark, values)
    reported = spark.createDataFrame(
        [(1, 101, "sink_rejected", "IllegalArgumentException: bad"), (1, 103, "malformed_json", "not JSON")],
        transforms.SINK_REJECTION_SCHEMA,
    )
    dead = transforms.dead_letters(transforms.rejected_records(kafka, reported)).orderBy("offset")
    letters = [
        (r["dlq_reason"], bytes(r["value"]), {h["key"]: bytes(h["value"]).decode() for h in r["headers"]})
        for r in dead.collect()
    ]
    assert [reason for reason, _, _ in letters] == ["sink_rejected", "malformed_json"]
    assert letters[0][2]["dlq.detail"] == "IllegalArgumentException: bad"
    assert letters[0][2]["dlq.source.offset"] == "101"
    assert letters[0][1] == values[1]  # the original value, byte for byte
    assert letters[1][1] == b"{broken"
    assert letters[1][2]["dlq.detail"] == "not JSON"


def test_dead_letters_keep_a_bounded_prefix_and_describe_the_whole_value(spark) -> None:
    import hashlib

    big = b"{" + bytes(range(256)) * 40 + b"}"  # oversized, 10,242 bytes
    small = b"\xff not utf-8"
    parsed = transforms.parse(frame(spark, [big, small]), MAX)
    dead = transforms.dead_letter_sink_frame(transforms.dead_letters(parsed, max_value_bytes=1000))
    letters = dead.collect()
    headers = [{h["key"]: bytes(h["value"]).decode() for h in r["headers"]} for r in letters]
    assert bytes(letters[0]["value"]) == big[:1000]
    assert headers[0]["dlq.reason"] == "oversized"
    assert headers[0]["dlq.value.bytes"] == str(len(big))
    assert headers[0]["dlq.value.sha256"] == hashlib.sha256(big).hexdigest()
    assert headers[0]["dlq.value.truncated"] == "true"
    assert bytes(letters[1]["value"]) == small
    assert headers[1]["dlq.value.bytes"] == str(len(small))
    assert headers[1]["dlq.value.sha256"] == hashlib.sha256(small).hexdigest()
    assert headers[1]["dlq.value.truncated"] == "false"
    # a long detail is bounded too
    assert all(len(h["dlq.detail"]) <= transforms.DLQ_MAX_DETAIL_CHARS for h in headers)


def test_what_the_schema_says_is_enforced_with_a_reason_per_violation(spark) -> None:
    values = [
        encode(envelope(user(60, dob__date="1990"))),  # year only
        encode(envelope(user(61, registered__date="2020-01-01T00:00:00"))),  # no offset
        encode(envelope(user(62), fetched_at="2025-03-04T05:06:07")),
        encode(envelope(user(63), source="elsewhere")),
        encode(envelope(user(64, nat="DEU"))),
        encode(envelope(user(65, nat="D"))),
        encode(envelope(user(66, dob__age=99_999_999_999))),
        encode(envelope(user(67, registered__age=-3))),
        encode(envelope(user(68, location__coordinates={"latitude": "north", "longitude": "12.5"}))),
        # what the schema allows stays valid: an offset other than Z, a blank coordinate
        encode(envelope(user(69, dob__date="1990-05-06T07:08:09+02:00"))),
        encode(envelope(user(70, location__coordinates={"latitude": " ", "longitude": "-12.5"}))),
    ]
    assert reasons(spark, values) == [
        ("unparsable_date", "user.dob.date"),
        ("unparsable_date", "user.registered.date"),
        ("unparsable_date", "fetched_at"),
        ("invalid_value", "source elsewhere (not one of synthetic, randomuser)"),
        ("invalid_length", "user.nat"),
        ("invalid_length", "user.nat"),
        ("out_of_range", "user.dob.age"),
        ("out_of_range", "user.registered.age"),
        ("invalid_number", "user.location.coordinates.latitude"),
        (None, None),
        (None, None),
    ]


def test_every_keyword_of_the_message_schema_is_enforced() -> None:
    """A keyword the stream does not check may not appear in the contract unnoticed."""
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        found.update(key for key in node if key not in {"properties", "items"})
        for child in node.get("properties", {}).values():
            walk(child)

    walk(contract.message_schema())
    assert found <= contract.ENFORCED_KEYWORDS | contract.ANNOTATION_KEYWORDS, found
    assert contract.message_schema()["$comment"].startswith("Enforced by the stream")


def test_an_escaped_lone_surrogate_is_rejected_and_a_pair_is_not(spark) -> None:
    def with_city(escape: str) -> bytes:
        return encode(envelope(user(80, location__city="@@"))).replace(b"@@", escape.encode())

    values = [
        with_city("M\\ud800nchen"),  # a high surrogate alone
        with_city("M\\uDC00nchen"),  # a low surrogate alone
        with_city("smile \\ud83d\\ude00"),  # a pair: one character (U+1F600)
        with_city("a backslash \\\\ud800"),  # an escaped backslash, then text
    ]
    got = reasons(spark, values)
    assert [reason for reason, _ in got] == ["invalid_unicode", "invalid_unicode", None, None]
