"""Pure parts of staging, publishing, the Cassandra sink, the stream and the CLI (no servers)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from userstream import contract
from userstream.cli import build_parser
from userstream.ingest.publishing import encode_message, iso_utc, message_for, producer_options
from userstream.ingest.sources.synthetic import generate_user
from userstream.ingest.staging import StagedRow
from userstream.settings import load_settings
from userstream.storage.client import CassandraConfig
from userstream.stream.runner import committed_offsets


def test_message_of_a_staged_row_follows_the_contract() -> None:
    import jsonschema

    document = generate_user(1, 1)
    row = StagedRow(
        "b-1", uuid.uuid4(), "synthetic", datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), document
    )
    message = message_for(row)
    assert message["fetched_at"] == "2025-01-02T03:04:05.678Z"
    assert message["id"] == str(row.record_id)
    jsonschema.validate(json.loads(encode_message(message)), contract.message_schema())
    assert "é" in encode_message({"x": "é"}).decode("utf-8")  # UTF-8, not \\u escapes


def test_iso_utc_converts_offsets() -> None:
    moment = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2025-01-01T10:00:00.000Z"


def test_the_producer_is_idempotent_and_waits_for_all_replicas() -> None:
    options = producer_options(load_settings(kafka_bootstrap_servers="a:1,b:2"))
    assert options["acks"] == "all"
    assert options["enable_idempotence"] is True
    assert options["max_in_flight_requests_per_connection"] <= 5
    assert options["compression_type"] == "gzip"
    assert options["bootstrap_servers"] == ["a:1", "b:2"]
    assert options["security_protocol"] == "PLAINTEXT"


def test_cassandra_config_is_plain_and_hashable() -> None:
    import pickle

    settings = load_settings(cassandra_username="u", cassandra_password="p", cassandra_write_concurrency=8)
    config = CassandraConfig.from_settings(settings)
    assert config.password == "p"
    assert config.concurrency == 8
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(config) == hash(CassandraConfig.from_settings(settings))


class _Query:
    """A query whose last progress is what PySpark 4.1 builds from the JVM's progress JSON."""

    def __init__(self, progress_json: str | None) -> None:
        self.progress_json = progress_json

    @property
    def lastProgress(self) -> Any:
        # pyspark/sql/streaming/query.py StreamingQuery.lastProgress does exactly this
        from pyspark.sql.streaming.listener import StreamingQueryProgress

        return StreamingQueryProgress.fromJson(json.loads(self.progress_json)) if self.progress_json else None


def _progress_json(end: object, latest: object) -> str:
    source = {
        "description": "KafkaV2[Subscribe[users]]",
        "startOffset": {"users": {"0": 0, "1": 0}},
        "endOffset": end,
        "latestOffset": latest,
        "numInputRows": 17,
        "inputRowsPerSecond": 1.0,
        "processedRowsPerSecond": 2.0,
    }
    return json.dumps(
        {
            "id": "5d7a3c36-8a9e-4d4b-9c76-2f1e8f0c2a11",
            "runId": "0b8b2f6e-3f7e-4a36-9d0a-9a6b1c2d3e4f",
            "name": "users_to_cassandra",
            "timestamp": "2026-11-21T00:00:00.000Z",
            "batchId": 3,
            "batchDuration": 120,
            "stateOperators": [],
            "sources": [source],
            "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
        }
    )


def test_committed_offsets_from_the_progress_pyspark_builds() -> None:
    query = _Query(_progress_json({"users": {"0": 10, "1": 7}}, {"users": {"0": 12, "1": 9}}))
    assert committed_offsets(query) == {0: 10, 1: 7}  # type: ignore[arg-type]
    assert committed_offsets(query, "latestOffset") == {0: 12, 1: 9}  # type: ignore[arg-type]
    assert committed_offsets(_Query(None)) is None  # type: ignore[arg-type]
    assert committed_offsets(_Query(_progress_json(None, None))) is None  # type: ignore[arg-type]


def test_cli_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["ingest", "--source", "randomuser", "--records", "10", "--batch-size", "5"])
    assert (args.source, args.records, args.batch_size, args.stage_only) == ("randomuser", 10, 5, False)
    assert parser.parse_args(["run"]).records == 10_000
    args = parser.parse_args(["stream", "--until-idle", "5", "--max-seconds", "60"])
    assert (args.until_idle, args.max_seconds) == (5.0, 60.0)
    assert parser.parse_args(["cassandra", "migrate"]).func.__name__ == "_migrate"
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "--records", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "--source", "nope"])
