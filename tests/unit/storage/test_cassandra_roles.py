"""Least-privilege Cassandra roles and the wait for CQL of `userstream cassandra migrate` (no server:
the CQL is generated and the connection is a fake)."""

from __future__ import annotations

from typing import Any

import pytest

from userstream.storage.client import CassandraConfig, CassandraError, connect_until
from userstream.storage.migration import CassandraRole, redact, role_statements, roles_from_env

ROLE_VARS = {
    "USERSTREAM_CASSANDRA_WRITER_ROLE": "userstream_writer",
    "USERSTREAM_CASSANDRA_WRITER_PASSWORD": "w-secret",
    "USERSTREAM_CASSANDRA_READER_ROLE": "userstream_reader",
    "USERSTREAM_CASSANDRA_READER_PASSWORD": "r'secret",
}


def test_writer_may_only_modify_and_reader_only_select_the_table() -> None:
    statements = role_statements("spark_streams", "created_users", roles_from_env(ROLE_VARS))
    assert statements == [
        "CREATE ROLE IF NOT EXISTS userstream_writer WITH PASSWORD = 'w-secret' AND LOGIN = true",
        "ALTER ROLE userstream_writer WITH PASSWORD = 'w-secret' AND LOGIN = true",
        "GRANT MODIFY ON TABLE spark_streams.created_users TO userstream_writer",
        "CREATE ROLE IF NOT EXISTS userstream_reader WITH PASSWORD = 'r''secret' AND LOGIN = true",
        "ALTER ROLE userstream_reader WITH PASSWORD = 'r''secret' AND LOGIN = true",
        "GRANT SELECT ON TABLE spark_streams.created_users TO userstream_reader",
    ]
    joined = " ".join(statements)
    for broad in ("SUPERUSER", "ALL PERMISSIONS", "ON ALL KEYSPACES", "ON KEYSPACE", "CREATE ON", "ALTER ON"):
        assert broad not in joined


def test_passwords_never_reach_the_output() -> None:
    for statement in role_statements("ks", "t", roles_from_env(ROLE_VARS)):
        shown = redact(statement)
        assert "secret" not in shown
    assert redact("ALTER ROLE a WITH PASSWORD = 'x''y' AND LOGIN = true") == (
        "ALTER ROLE a WITH PASSWORD = '***' AND LOGIN = true"
    )
    assert "w-secret" not in repr(CassandraRole("a", "w-secret", ("SELECT",)))


def test_no_role_variables_no_roles() -> None:
    assert roles_from_env({}) == []


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"USERSTREAM_CASSANDRA_WRITER_ROLE": "w"}, "USERSTREAM_CASSANDRA_WRITER_PASSWORD"),
        ({"USERSTREAM_CASSANDRA_READER_PASSWORD": "p"}, "USERSTREAM_CASSANDRA_READER_ROLE"),
        (
            {"USERSTREAM_CASSANDRA_WRITER_ROLE": "bad-name", "USERSTREAM_CASSANDRA_WRITER_PASSWORD": "p"},
            "USERSTREAM_CASSANDRA_WRITER_ROLE",
        ),
        (
            {"USERSTREAM_CASSANDRA_WRITER_ROLE": "a;DROP", "USERSTREAM_CASSANDRA_WRITER_PASSWORD": "p"},
            "USERSTREAM_CASSANDRA_WRITER_ROLE",
        ),
    ],
)
def test_a_wrong_role_setting_fails_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(CassandraError, match=named):
        roles_from_env(env)


CONFIG = CassandraConfig(contact_points=("cassandra",), port=9042, local_dc="dc1", keyspace="ks", table="t")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_connecting_waits_for_cql_with_capped_exponential_backoff() -> None:
    time = FakeTime()
    attempts: list[float] = []

    def connector(config: CassandraConfig) -> tuple[Any, Any]:
        attempts.append(time.now)
        if len(attempts) < 4:
            raise CassandraError("connection refused")
        return "cluster", "session"

    result = connect_until(CONFIG, 600, connector=connector, clock=time.clock, sleep=time.sleep, interval=10)
    assert result == ("cluster", "session")
    assert attempts == [0, 0.5, 1.5, 3.5]


def test_migration_gives_up_at_its_deadline_with_the_last_error() -> None:
    time = FakeTime()

    def connector(config: CassandraConfig) -> tuple[Any, Any]:
        raise CassandraError("connection refused")

    with pytest.raises(CassandraError, match=r"did not accept CQL within 25s: connection refused"):
        connect_until(CONFIG, 25, connector=connector, clock=time.clock, sleep=time.sleep, interval=10)
    assert time.sleeps == [0.5, 1, 2, 4, 8, 9.5]


def test_without_a_wait_the_first_error_is_final() -> None:
    calls = []

    def connector(config: CassandraConfig) -> tuple[Any, Any]:
        calls.append(1)
        raise CassandraError("refused")

    with pytest.raises(CassandraError):
        connect_until(CONFIG, 0, connector=connector, sleep=lambda s: None)
    assert calls == [1]


def test_cli_takes_the_wait() -> None:
    import argparse

    from userstream.cli import pipeline as commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["cassandra", "migrate", "--wait-seconds", "1500"])
    assert args.wait_seconds == 1500.0
    assert parser.parse_args(["cassandra", "migrate"]).wait_seconds == 0.0
