"""Consistency levels: settings validated at start-up; read-backs at the read level."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cassandra import ConsistencyLevel

from userstream.settings import SettingsError, load_settings
from userstream.storage.client import CassandraConfig, count_rows, existing_ids


def test_reads_and_writes_default_to_local_quorum() -> None:
    settings = load_settings()
    assert settings.cassandra_write_consistency == "LOCAL_QUORUM"
    assert settings.cassandra_read_consistency == "LOCAL_QUORUM"
    assert settings.cassandra_retry_deadline_seconds >= 600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USERSTREAM_CASSANDRA_WRITE_CONSISTENCY", "quorom"),
        ("USERSTREAM_CASSANDRA_READ_CONSISTENCY", "ANY"),  # not a read level
        ("USERSTREAM_CASSANDRA_RETRY_DEADLINE_SECONDS", "0"),
    ],
)
def test_a_wrong_level_or_deadline_fails_at_start_up_naming_the_setting(monkeypatch, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


class _Session:
    def __init__(self) -> None:
        self.statements: list[Any] = []

    def prepare(self, query: str) -> Any:
        class Prepared:
            consistency_level = None

        prepared = Prepared()
        self.statements.append(prepared)
        return prepared

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(statement)

        class Result:
            def one(self) -> tuple[int]:
                return (3,)

        return Result()


def test_read_backs_run_at_the_read_consistency_level(monkeypatch) -> None:
    config = CassandraConfig.from_settings(load_settings(cassandra_read_consistency="QUORUM"))
    session = _Session()
    assert count_rows(session, config) == 3
    assert session.statements[-1].consistency_level == ConsistencyLevel.QUORUM

    monkeypatch.setattr(
        "cassandra.concurrent.execute_concurrent_with_args", lambda session, statement, params, **_: []
    )
    existing_ids(session, config, [uuid.uuid4()])
    assert session.statements[-1].consistency_level == ConsistencyLevel.QUORUM
