"""Where build_spark_session finds the Kafka connector jars (no Spark started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from userstream.errors import UserstreamError
from userstream.settings import load_settings
from userstream.stream import spark_session


def test_explicit_jars_dir_is_used(tmp_path: Path) -> None:
    (tmp_path / "spark-sql-kafka-0-10_2.13-4.1.3.jar").write_bytes(b"")
    (tmp_path / "kafka-clients-3.9.1.jar").write_bytes(b"")
    settings = load_settings(spark_jars_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert [p.name for p in spark_session.connector_jars(settings)] == [
        "kafka-clients-3.9.1.jar",
        "spark-sql-kafka-0-10_2.13-4.1.3.jar",
    ]


def test_explicit_jars_dir_without_the_connector_fails(tmp_path: Path) -> None:
    settings = load_settings(spark_jars_dir=tmp_path)
    with pytest.raises(UserstreamError, match="USERSTREAM_SPARK_JARS_DIR"):
        spark_session.connector_jars(settings)


def test_missing_cache_says_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_session, "spark_home_jars", lambda: tmp_path / "no-spark-home")
    settings = load_settings(cache_dir=tmp_path / "empty-cache")
    with pytest.raises(UserstreamError, match="userstream local fetch"):
        spark_session.connector_jars(settings)


def test_connector_already_in_spark_home_needs_no_extra_jars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "spark-sql-kafka-0-10_2.13-4.1.3.jar").write_bytes(b"")
    monkeypatch.setattr(spark_session, "spark_home_jars", lambda: tmp_path)
    settings = load_settings(cache_dir=tmp_path / "empty-cache")
    assert spark_session.connector_jars(settings) == []


def test_spark_submit_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert not spark_session.launched_by_spark_submit()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")
    assert spark_session.launched_by_spark_submit()
