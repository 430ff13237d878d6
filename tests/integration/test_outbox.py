"""The outbox on the real PostgreSQL and Kafka: poison rows, text jsonb refuses, duplicates in a
page, broken documents without identity, and two publishers at once."""

from __future__ import annotations

import json
import random
import string
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from pipeline_support import isolated

from userstream.contract.ids import record_id
from userstream.ingest.publishing import Publisher, PublishError, ensure_topics
from userstream.ingest.run import ingest
from userstream.ingest.sources import RawBatch
from userstream.ingest.sources.synthetic import SyntheticSource, generate_user
from userstream.ingest.staging import Staging
from userstream.local.run import topic_messages
from userstream.stream.runner import topic_end_offsets

MiB = 1024 * 1024


class ListSource:
    """A source serving fixed pages (what a misbehaving API could return)."""

    name = "synthetic"

    def __init__(self, pages: list[list[dict[str, Any]]], tag: str) -> None:
        self.pages = pages
        self.tag = tag

    def batches(self, records: int, batch_size: int) -> Iterator[RawBatch]:
        for number, documents in enumerate(self.pages, start=1):
            yield RawBatch(batch_id=f"{self.tag}:page={number}", source=self.name, documents=documents)


def _topic_messages(settings) -> list[tuple[bytes, bytes]]:
    return [(record.key, record.value) for record in topic_messages(settings, settings.kafka_topic)]


def _noise(size: int, seed: int) -> str:
    """Text gzip cannot shrink much (a broker checks the compressed batch against its limit)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


@pytest.fixture
def settings(stack_settings, unique_names, tmp_path):
    return isolated(stack_settings, unique_names, tmp_path, ingest_publish_max_attempts=3)


def test_a_poison_row_is_recorded_then_parked_and_never_blocks_the_others(settings) -> None:
    # the topic refuses batches above 100 KB (as a topic with a small max.message.bytes does)
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options()
    )
    try:
        admin.create_topics(
            [NewTopic(settings.kafka_topic, 2, 1, topic_configs={"max.message.bytes": str(100_000)})]
        )
    finally:
        admin.close()
    valid = [generate_user(7, index) for index in range(30)]
    too_large_for_the_client = generate_user(7, 100)  # above the producer's 1 MiB max_request_size
    too_large_for_the_client["picture"]["large"] = _noise(MiB + 1000, 1)
    too_large_for_the_broker = generate_user(7, 101)  # under the client's limit, over the topic's
    too_large_for_the_broker["picture"]["large"] = _noise(300_000, 2)
    page = [*valid[:10], too_large_for_the_client, *valid[10:20], too_large_for_the_broker, *valid[20:]]
    poison = {record_id(too_large_for_the_client), record_id(too_large_for_the_broker)}
    source = ListSource([page], f"poison-{uuid.uuid4().hex[:6]}")

    # run 1: every valid row is published and marked; the two failures are recorded, the run says so
    with pytest.raises(PublishError, match="did not acknowledge 2 message"):
        ingest(settings, source=source, records=len(page))
    staging = Staging(settings)
    assert staging.counts()["published"] == len(valid)
    assert sum(topic_end_offsets(settings).values()) == len(valid)
    with staging.connect() as connection:
        rows = connection.execute(
            "SELECT record_id, publish_attempts, last_error, parked_at "
            f"FROM {settings.staging_schema}.raw_users WHERE published_at IS NULL"
        ).fetchall()
    assert {row[0] for row in rows} == poison
    assert all(row[1] == 1 and "MessageSizeTooLargeError" in row[2] and row[3] is None for row in rows), rows

    # run 2 tries them once more; run 3 reaches the limit and parks them: it succeeds and reports them
    with pytest.raises(PublishError):
        ingest(settings, source=source, records=len(page))
    third = ingest(settings, source=source, records=len(page))
    assert {row.record_id for row in third.parked} == poison
    assert all(row.attempts == 3 for row in third.parked)
    assert third.parked_total == 2
    assert any(line.startswith("parked            2 in this run") for line in third.lines())
    # later runs neither send nor count them again, and nothing valid was sent twice
    fourth = ingest(settings, source=source, records=len(page))
    assert (fourth.published, fourth.publish_failed, len(fourth.parked), fourth.parked_total) == (0, 0, 0, 2)
    keys = Counter(key for key, _ in _topic_messages(settings))
    assert set(keys) == {str(record_id(document)).encode() for document in valid}
    assert set(keys.values()) == {1}


def test_nul_characters_and_lone_surrogates_are_staged_sanitised_and_the_original_kept(settings) -> None:
    ensure_topics(settings, [settings.kafka_topic])
    plain = generate_user(8, 1)
    nul_value = generate_user(8, 2)
    nul_value["name"]["first"] = "Ada\x00Lovelace"
    nul_key = generate_user(8, 3)
    nul_key["location"]["\x00odd"] = "x"
    surrogate = generate_user(8, 4)
    surrogate["location"]["city"] = "M\ud800nchen"  # json.loads gives this for "M\\ud800nchen"
    surrogate["login"]["uuid"] = surrogate["login"]["uuid"] + "\udfff"
    documents = [plain, nul_value, nul_key, surrogate]
    originals = [json.dumps(d, sort_keys=True, ensure_ascii=True) for d in documents]
    summary = ingest(settings, source=ListSource([documents], "text"), records=len(documents))
    assert summary.staged_new == 4
    assert summary.sanitised == 3
    assert summary.published == 4

    with Staging(settings).connect() as connection:
        rows = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT record_id, document, sanitised, original_document "
                f"FROM {settings.staging_schema}.raw_users"
            ).fetchall()
        }
    assert rows[record_id(plain)][1:] == (None, None)
    document, changes, original = rows[record_id(nul_value)]
    assert document["name"]["first"] == "Ada\ufffdLovelace"
    assert changes == {"name.first": "1 x U+0000 -> U+FFFD"}
    assert original == originals[1]
    assert json.loads(original) == nul_value  # nothing lost
    assert set(rows[record_id(nul_key)][1]) == {"location.\ufffdodd (key)"}
    document, changes, original = rows[record_id(surrogate)]
    assert document["location"]["city"] == "M\ufffdnchen"
    assert set(changes) == {"location.city", "login.uuid"}
    assert json.loads(original) == surrogate
    # the topic's messages are valid UTF-8 JSON with the same ids
    messages = {key.decode(): json.loads(value.decode("utf-8")) for key, value in _topic_messages(settings)}
    assert set(messages) == {str(record_id(d)) for d in documents}
    assert messages[str(record_id(nul_value))]["user"]["name"]["first"] == "Ada\ufffdLovelace"


def test_duplicates_in_a_page_are_counted_and_broken_documents_keep_their_own_ids(settings) -> None:
    ensure_topics(settings, [settings.kafka_topic])
    user = generate_user(9, 1)
    changed = json.loads(json.dumps(user))
    changed["email"] = "someone.else@example.com"  # the same login.uuid, other content
    broken_a = {"nat": "DE", "name": {"first": "Ada"}}
    broken_b = {"nat": "DE", "phone": "+49 1"}
    page = [user, dict(user), changed, broken_a, broken_b]
    summary = ingest(settings, source=ListSource([page], "dups"), records=len(page))
    assert (summary.fetched, summary.staged_new, summary.duplicates, summary.conflicting_duplicates) == (
        5,
        3,
        2,
        1,
    )
    assert summary.already_staged == 0
    assert summary.published == 3
    assert {key.decode() for key, _ in _topic_messages(settings)} == {
        str(record_id(user)),
        str(record_id(broken_a)),
        str(record_id(broken_b)),
    }


def test_two_concurrent_publishers_never_send_the_same_row(settings) -> None:
    n = 3000
    ensure_topics(settings, [settings.kafka_topic])
    staging = Staging(settings)
    source = SyntheticSource(settings.synthetic_seed, 0.0)
    staged = ingest(settings, source=source, records=n, batch_size=1000, publish=False)
    assert staged.staged_new == n
    start = threading.Barrier(2)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def publish(number: int) -> None:
        try:
            with Publisher(settings, staging) as publisher:
                start.wait(30)
                results[number] = publisher.publish_pending(page_size=200)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert results[1].published + results[2].published == n
    assert results[1].published > 0, "the two publishers did not overlap"
    assert results[2].published > 0, "the two publishers did not overlap"
    assert sum(topic_end_offsets(settings).values()) == n
    assert staging.counts()["published"] == n
