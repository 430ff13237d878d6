"""Poison inputs mixed into valid traffic on the real stack: the stream keeps running, valid records
are stored, each poison record is dead-lettered with its reason, and the counts reconcile.

* non-finite numbers ("NaN", "Infinity", the bare tokens NaN and 1e309) in a numeric column, which
  the Cassandra driver refuses to bind (before: the batch failed and replayed forever);
* values near and above Kafka's default 1 MiB message limit (before: the dead letter copied the
  whole value and the dead-letter write failed on every replay).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from pipeline_support import isolated, table_ids

from userstream.contract.ids import record_id
from userstream.ingest.publishing import encode_message, ensure_topics
from userstream.ingest.sources.synthetic import generate
from userstream.local.run import dead_letter_reasons
from userstream.storage.migration import migrate
from userstream.stream.runner import caught_up, run_stream, topic_end_offsets

MiB = 1024 * 1024


def _message(settings, index: int) -> dict[str, Any]:
    document, _ = generate(settings.synthetic_seed, index, 0.0)
    return {
        "schema_version": 1,
        "id": str(record_id(document)),
        "source": "synthetic",
        "batch_id": "poison",
        "fetched_at": "2025-01-01T00:00:00.000Z",
        "user": document,
    }


def _with_coordinate(message: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    message["user"]["location"]["coordinates"][name] = value
    return message


def _bare_token(message: dict[str, Any], token: bytes) -> bytes:
    """The message with a bare JSON token (NaN, 1e309) as its latitude (json.dumps cannot write 1e309)."""
    marker = "@@latitude@@"
    message["user"]["location"]["coordinates"]["latitude"] = marker
    return encode_message(message).replace(f'"{marker}"'.encode(), token)


def test_poison_records_are_dead_lettered_and_the_stream_keeps_running(
    stack_settings, unique_names, tmp_path, spark
):
    settings = isolated(stack_settings, unique_names, tmp_path)
    migrate(settings)
    # the source topic takes records above the default 1 MiB limit (as a topic of a producer with a
    # larger limit would); the dead-letter topic keeps Kafka's defaults
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        admin.create_topics(
            [NewTopic(settings.kafka_topic, 2, 1, topic_configs={"max.message.bytes": str(4 * MiB)})]
        )
    finally:
        admin.close()
    ensure_topics(settings)

    poison: dict[str, tuple[bytes, str]] = {
        "nan_string": (
            encode_message(_with_coordinate(_message(settings, 100), "latitude", "NaN")),
            "non_finite_number",
        ),
        "infinity_string": (
            encode_message(_with_coordinate(_message(settings, 101), "longitude", "-Infinity")),
            "non_finite_number",
        ),
        "nan_token": (_bare_token(_message(settings, 102), b"NaN"), "non_finite_number"),
        "huge_number": (_bare_token(_message(settings, 103), b"1e309"), "non_finite_number"),
        "near_limit": (b"{" + b" " * (MiB - 600) + b"}", "oversized"),
        "above_limit": (b"{" + b"x" * (MiB + MiB // 2) + b"}", "oversized"),
    }
    first_wave = [_message(settings, i) for i in range(8)]
    second_wave = [_message(settings, i) for i in range(8, 14)]
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **settings.kafka_client_options(),
        acks="all",
        max_request_size=4 * MiB,
    )

    def send_valid(messages: list[dict[str, Any]]) -> None:
        for index, message in enumerate(messages):
            producer.send(
                settings.kafka_topic,
                key=message["id"].encode(),
                value=encode_message(message),
                partition=index % 2,
            )
        producer.flush()

    send_valid(first_wave[:4])
    sources = {
        name: producer.send(
            settings.kafka_topic, key=f"poison-{name}".encode(), value=value, partition=0
        ).get(30)
        for name, (value, _) in poison.items()
    }
    send_valid(first_wave[4:])

    # one run of the query: once it is past the poison, more valid traffic arrives and is stored too
    targets = topic_end_offsets(settings)
    state: dict[str, Any] = {"second": None}

    def stop_when(query) -> bool:
        if state["second"] is None:
            if caught_up(query, targets):
                send_valid(second_wave)
                state["second"] = topic_end_offsets(settings)
            return False
        return caught_up(query, state["second"])

    totals = run_stream(settings, spark=spark, stop_when=stop_when, max_seconds=300)
    producer.close()
    assert state["second"] is not None, "the stream never got past the poison records"

    valid = {uuid.UUID(m["id"]) for m in first_wave + second_wave}
    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == valid

    letters = dead_letter_reasons(settings)
    assert set(letters) == {f"poison-{name}" for name in poison}
    for name, (_, reason) in poison.items():
        headers = letters[f"poison-{name}"]
        assert headers["dlq.reason"] == reason, (name, headers)
        assert headers["dlq.source.partition"] == str(sources[name].partition)
        assert headers["dlq.source.offset"] == str(sources[name].offset)
    assert letters["poison-nan_string"]["dlq.detail"] == "user.location.coordinates.latitude"
    assert letters["poison-infinity_string"]["dlq.detail"] == "user.location.coordinates.longitude"

    # counts reconcile: every record in is exactly one of stored or dead-lettered
    sent = len(first_wave) + len(second_wave) + len(poison)
    assert totals.rows_in == sent
    assert totals.stored == len(valid)
    assert totals.dead_lettered == len(poison)
    assert totals.stored + totals.dead_lettered == totals.rows_in

    # the big values are dead-lettered as a bounded prefix, with their size and digest
    consumer = KafkaConsumer(
        settings.kafka_dlq_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **settings.kafka_client_options(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    received = {record.key.decode(): record for record in consumer}
    consumer.close()
    for name in ("near_limit", "above_limit"):
        original = poison[name][0]
        record = received[f"poison-{name}"]
        headers = {key: value.decode() for key, value in record.headers}
        assert record.value == original[: settings.dlq_max_value_bytes]
        assert headers["dlq.value.bytes"] == str(len(original))
        assert headers["dlq.value.sha256"] == hashlib.sha256(original).hexdigest()
        assert headers["dlq.value.truncated"] == "true"
    nan_record = received["poison-nan_token"]
    assert nan_record.value == poison["nan_token"][0]  # small values are kept byte for byte


def test_a_row_the_sink_cannot_bind_is_dead_lettered_not_retried_forever(
    stack_settings, unique_names, tmp_path, spark, monkeypatch
):
    """The sink's own guard, without the parse check: the Java writer cannot bind an id that is no
    UUID, and refuses the row for good."""
    from userstream.stream import transforms

    # parse without the id check (a size limit of its own: the parse columns are rebuilt)
    monkeypatch.setattr(transforms, "UUID_PATTERN", r"^.*$")
    settings = isolated(stack_settings, unique_names, tmp_path, stream_max_record_bytes=64 * 1024 + 11)
    migrate(settings)
    ensure_topics(settings)
    valid = [_message(settings, i) for i in range(3)]
    poison = encode_message({**_message(settings, 50), "id": "not-a-uuid"})
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options(), acks="all"
    )
    for message in valid:
        producer.send(
            settings.kafka_topic, key=message["id"].encode(), value=encode_message(message), partition=0
        )
    source = producer.send(settings.kafka_topic, key=b"poison-bind", value=poison, partition=1).get(30)
    producer.flush()
    producer.close()

    targets = topic_end_offsets(settings)
    totals = run_stream(settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=240)

    assert set(table_ids(settings)) == {uuid.UUID(m["id"]) for m in valid}
    letters = dead_letter_reasons(settings)
    assert set(letters) == {"poison-bind"}
    headers = letters["poison-bind"]
    assert headers["dlq.reason"] == "sink_rejected"
    assert headers["dlq.detail"].startswith("IllegalArgumentException: "), headers
    assert "not-a-uuid" in headers["dlq.detail"]
    assert headers["dlq.source.offset"] == str(source.offset)
    assert (totals.rows_in, totals.stored, totals.dead_lettered) == (4, 3, 1)


def test_more_poison_in_one_stream_run_each_dead_lettered_with_its_reason(
    stack_settings, unique_names, tmp_path, spark
):
    """Text and structure the contract cannot take, mixed into valid traffic, in one stream run:
    U+0000 (a valid JSON escape: stored as sent), unpaired surrogate escapes, bytes that are not
    UTF-8, JSON that is not an object, nesting deeper than the JSON reader allows, null keys, and
    one user sent twice with different content (one row, the later content)."""
    settings = isolated(stack_settings, unique_names, tmp_path)
    migrate(settings)
    ensure_topics(settings)

    def lone(message: dict[str, Any], escape: bytes) -> bytes:
        message["user"]["location"]["city"] = "@@city@@"
        return encode_message(message).replace(b"@@city@@", escape)

    deep = 5000  # the JSON reader refuses more than 1000 levels (Jackson StreamReadConstraints)
    poison: dict[str, tuple[bytes, str]] = {
        "lone_high_surrogate": (lone(_message(settings, 200), b"M\\ud800nchen"), "invalid_unicode"),
        "lone_low_surrogate": (lone(_message(settings, 201), b"\\udfff"), "invalid_unicode"),
        "latin1_bytes": (encode_message(_message(settings, 202)).replace(b"@", b"\xe9@"), "not_utf8"),
        "truncated_utf8": (b'{"schema_version": 1, "id": "\xe2\x82"}', "not_utf8"),
        "array": (b"[1, 2, 3]", "malformed_json"),
        "number": (b"42", "malformed_json"),
        "string": (b'"a user"', "malformed_json"),
        "null": (b"null", "malformed_json"),
        "deep_nesting": (b'{"user": ' + b"[" * deep + b"]" * deep + b"}", "malformed_json"),
    }
    valid = [_message(settings, i) for i in range(20)]
    nul = _message(settings, 30)
    nul["user"]["name"]["first"] = "Ada\x00Lovelace"  # json.dumps writes the escape \u0000
    pair = _message(settings, 31)
    pair["user"]["location"]["city"] = "smile \U0001f600"
    twice_first = _message(settings, 32)
    twice_second = _message(settings, 32)
    twice_second["user"]["email"] = "second.copy@example.com"
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options(), acks="all"
    )
    for index, message in enumerate(valid[:10]):
        producer.send(
            settings.kafka_topic,
            key=message["id"].encode(),
            value=encode_message(message),
            partition=index % 2,
        )
    sources = {}
    for name, (value, _) in poison.items():
        key = None if name == "array" else f"poison-{name}".encode()  # one poison record without a key
        sources[name] = producer.send(settings.kafka_topic, key=key, value=value, partition=0).get(30)
    for message in (nul, pair, twice_first, twice_second):  # in order, one partition
        producer.send(settings.kafka_topic, key=None, value=encode_message(message), partition=1).get(30)
    for index, message in enumerate(valid[10:]):
        producer.send(
            settings.kafka_topic,
            key=message["id"].encode(),
            value=encode_message(message),
            partition=index % 2,
        )
    producer.flush()
    producer.close()

    targets = topic_end_offsets(settings)
    totals = run_stream(settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=300)

    stored_ids = {uuid.UUID(m["id"]) for m in [*valid, nul, pair, twice_first]}
    ids = table_ids(settings)
    assert len(ids) == len(set(ids))
    assert set(ids) == stored_ids
    letters = dead_letter_reasons(settings)
    expected_keys = {"" if name == "array" else f"poison-{name}" for name in poison}
    assert set(letters) == expected_keys
    for name, (_, reason) in poison.items():
        headers = letters["" if name == "array" else f"poison-{name}"]
        assert headers["dlq.reason"] == reason, (name, headers)
        assert headers["dlq.source.offset"] == str(sources[name].offset)
    sent = len(valid) + len(poison) + 4
    print(
        f"\npoison run: in {totals.rows_in}, stored {totals.stored} (writes; {len(set(ids))} rows), "
        f"dead-lettered {totals.dead_lettered}"
    )
    assert (totals.rows_in, totals.stored, totals.dead_lettered) == (sent, sent - len(poison), len(poison))

    from userstream.storage.client import CassandraConfig, connect

    config = CassandraConfig.from_settings(settings)
    cluster, session = connect(config)
    try:
        read = f"SELECT first_name, city, email FROM {config.keyspace}.{config.table} WHERE id = %s"
        assert session.execute(read, (uuid.UUID(nul["id"]),)).one().first_name == "Ada\x00Lovelace"
        assert session.execute(read, (uuid.UUID(pair["id"]),)).one().city == "smile \U0001f600"
        assert session.execute(read, (uuid.UUID(twice_first["id"]),)).one().email == "second.copy@example.com"
    finally:
        cluster.shutdown()
