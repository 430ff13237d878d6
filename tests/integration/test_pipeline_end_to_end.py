"""N users end to end, idempotent re-ingestion, and the dead-letter path, on the real stack."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC

import pytest
from kafka import KafkaProducer
from pipeline_support import isolated, table_column, table_ids

from userstream.contract.ids import record_id
from userstream.ingest.publishing import encode_message, ensure_topics
from userstream.ingest.run import ingest
from userstream.ingest.sources.synthetic import SyntheticSource, generate
from userstream.ingest.staging import Staging
from userstream.local.run import dead_letter_reasons, reconcile
from userstream.storage.migration import migrate
from userstream.stream.runner import caught_up, run_stream, topic_end_offsets

N = 600


def _expected(settings) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    valid, broken = set(), set()
    for index in range(N):
        document, kind = generate(settings.synthetic_seed, index, settings.synthetic_broken_rate)
        (broken if kind else valid).add(record_id(document))
    return valid, broken


def _stream_until_caught_up(settings, spark) -> None:
    targets = topic_end_offsets(settings)
    run_stream(settings, spark=spark, stop_when=lambda q: caught_up(q, targets), max_seconds=300)


@pytest.fixture
def settings(stack_settings, unique_names, tmp_path):
    chosen = isolated(stack_settings, unique_names, tmp_path, synthetic_broken_rate=0.05)
    migrate(chosen)
    return chosen


def test_n_users_end_to_end_then_the_same_batches_again(settings, spark) -> None:
    source = SyntheticSource(seed=settings.synthetic_seed, broken_rate=settings.synthetic_broken_rate)
    first = ingest(settings, source=source, records=N, batch_size=250)
    assert first.published == N
    assert first.staged_new == N
    streamed_from = time.time()
    _stream_until_caught_up(settings, spark)
    streamed_until = time.time()
    # the writer binds each micro-batch's processing time (the plan has no per-batch literal)
    processed = [t.replace(tzinfo=UTC).timestamp() for t in table_column(settings, "processed_at")]
    assert processed, "no rows"
    outside = [t for t in processed if not streamed_from - 1 <= t <= streamed_until + 1]
    assert not outside, (
        f"processed_at outside the stream's run [{streamed_from}, {streamed_until}]: {outside[:3]}"
    )

    valid, broken = _expected(settings)
    assert broken, "the seed should produce some broken records at a 5% rate"
    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == valid
    letters = dead_letter_reasons(settings)
    assert {uuid.UUID(key) for key in letters} == broken
    result = reconcile(settings, valid | broken)
    assert result.ok, result

    # the same batches again: nothing new is staged or published, the table is unchanged
    again = ingest(settings, source=source, records=N, batch_size=250)
    assert again.staged_new == 0
    assert again.already_staged == N
    assert again.published == 0
    # and even a forced re-send of every message (a lost acknowledgement) adds no row
    with Staging(settings).connect() as connection:
        connection.execute(f"UPDATE {settings.staging_schema}.raw_users SET published_at = NULL")
        connection.commit()
    resent = ingest(settings, source=source, records=N, batch_size=250)
    assert resent.repaired == N
    _stream_until_caught_up(settings, spark)
    ids = table_ids(settings)
    assert len(ids) == len(set(ids)) == len(valid)


def test_bad_messages_go_to_the_dead_letter_topic_and_good_ones_are_stored(
    stack_settings, unique_names, tmp_path, spark
):
    settings = isolated(stack_settings, unique_names, tmp_path, stream_max_record_bytes=4096)
    migrate(settings)
    ensure_topics(settings)

    def message(index: int, **changes) -> dict:
        document, _ = generate(settings.synthetic_seed, index, 0.0)
        for path, value in changes.items():
            node = document
            *parents, leaf = path.split(".")
            for part in parents:
                node = node[part]
            if value is None:
                del node[leaf]
            else:
                node[leaf] = value
        return {
            "schema_version": 1,
            "id": str(record_id(document)),
            "source": "synthetic",
            "batch_id": "handmade",
            "fetched_at": "2025-01-01T00:00:00.000Z",
            "user": document,
        }

    good = [message(i) for i in range(10)]
    bad: dict[str, bytes] = {
        "malformed": b'{"schema_version": 1, "id": ',
        "truncated": encode_message(message(20))[:-40],
        "wrong_type": encode_message(message(21, **{"dob.age": "forty"})),
        "missing_field": encode_message(message(22, **{"email": None})),
        "bad_email": encode_message(message(23, email="nobody-at-example.com")),
        "bad_date": encode_message(message(24, **{"dob.date": "31/02/1990"})),
        "non_utf8": b'{"schema_version": 1, "id": "\xff\xfe"}',
        "oversized": encode_message(message(25, **{"picture.large": "x" * 5000})),
    }
    expected_reason = {
        "malformed": "malformed_json",
        "truncated": "malformed_json",
        "wrong_type": "wrong_type",
        "missing_field": "missing_field",
        "bad_email": "invalid_email",
        "bad_date": "unparsable_date",
        "non_utf8": "not_utf8",
        "oversized": "oversized",
    }
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options(), acks="all"
    )
    sent = {}
    for index, document in enumerate(good[:5]):
        producer.send(
            settings.kafka_topic,
            key=document["id"].encode(),
            value=encode_message(document),
            partition=index % 2,
        )
    for name, value in bad.items():
        sent[name] = producer.send(
            settings.kafka_topic, key=f"bad-{name}".encode(), value=value, partition=0
        ).get(30)
    for index, document in enumerate(good[5:]):
        producer.send(
            settings.kafka_topic,
            key=document["id"].encode(),
            value=encode_message(document),
            partition=index % 2,
        )
    producer.flush()
    producer.close()

    _stream_until_caught_up(settings, spark)

    assert set(table_ids(settings)) == {uuid.UUID(d["id"]) for d in good}
    letters = dead_letter_reasons(settings)
    for name, metadata in sent.items():
        headers = letters[f"bad-{name}"]
        assert headers["dlq.reason"] == expected_reason[name], (name, headers)
        assert headers["dlq.source.topic"] == settings.kafka_topic
        assert headers["dlq.source.partition"] == str(metadata.partition)
        assert headers["dlq.source.offset"] == str(metadata.offset)
    assert Counter(h["dlq.reason"] for h in letters.values()) == Counter(expected_reason.values())
    # the original payload is kept byte for byte
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.kafka_dlq_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **settings.kafka_client_options(),
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    payloads = {record.key.decode(): record.value for record in consumer}
    consumer.close()
    assert payloads["bad-non_utf8"] == bad["non_utf8"]
    assert payloads["bad-truncated"] == bad["truncated"]
    json.loads(payloads["bad-bad_email"])
