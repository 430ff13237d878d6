"""The pure parts of `userstream local cql|topic`: statement splitting, topic names, messages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from userstream.errors import UserstreamError
from userstream.local.tools import format_message, format_result, resolve_topic, split_statements
from userstream.settings import load_settings


def test_statements_end_at_semicolons_outside_quotes_and_comments() -> None:
    text = "SELECT 'a;b' FROM t; -- a comment; not a statement\nINSERT INTO t (x) VALUES (\"q;\");\nSELECT"
    statements, rest = split_statements(text)
    assert statements == ["SELECT 'a;b' FROM t", 'INSERT INTO t (x) VALUES ("q;")']
    assert rest.strip() == "SELECT"


def test_result_table_counts_rows() -> None:
    assert format_result(["id", "name"], [(1, None), (22, "Ann")]).splitlines() == [
        "id  name",
        "1   null",
        "22  Ann",
        "(2 rows)",
    ]


def test_topic_aliases_and_a_near_miss() -> None:
    settings = load_settings()
    existing = {"users_created", "users_created.dlq"}
    assert resolve_topic("dlq", settings, existing) == "users_created.dlq"
    assert resolve_topic("main", settings, existing) == "users_created"
    with pytest.raises(UserstreamError, match=r"did you mean users_created\.dlq\?"):
        resolve_topic("users_created_dlq", settings, existing)


def test_message_shows_where_it_is_its_headers_and_a_cut_value() -> None:
    record = SimpleNamespace(
        topic="t.dlq",
        partition=2,
        offset=7,
        key=b"k",
        headers=[("dlq.reason", b"too_large")],
        value=b"x" * 30,
    )
    assert format_message(record, max_value=10).splitlines() == [
        "t.dlq[2]@7 key=k",
        "  dlq.reason: too_large",
        "  value: xxxxxxxxxx... (30 characters)",
    ]
