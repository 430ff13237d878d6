"""Pom generation and the artifact cache stamp of the local stack (no Maven run)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from userstream.local import artifacts
from userstream.versions import version

NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def _deps(pom: str) -> dict[str, tuple[str, list[str]]]:
    root = ET.fromstring(pom)
    found = {}
    for dep in root.iterfind("m:dependencies/m:dependency", NS):
        artifact = dep.findtext("m:artifactId", namespaces=NS)
        exclusions = [
            f"{e.findtext('m:groupId', namespaces=NS)}:{e.findtext('m:artifactId', namespaces=NS)}"
            for e in dep.iterfind("m:exclusions/m:exclusion", NS)
        ]
        found[artifact] = (dep.findtext("m:version", namespaces=NS), exclusions)
    return found


def test_kafka_pom_pins_broker_and_slf4j_1_binding_from_versions_env() -> None:
    deps = _deps(artifacts.render_pom(artifacts.kafka_artifacts()))
    assert deps[f"kafka_{version('SCALA_BINARY_VERSION')}"][0] == version("KAFKA_VERSION")
    # Kafka 4.x declares slf4j-api 1.7.x: its log4j2 binding is log4j-slf4j-impl, not -slf4j2-
    assert deps["log4j-slf4j-impl"][0] == version("LOG4J_VERSION")
    assert "log4j-slf4j2-impl" not in deps


def test_cassandra_pom() -> None:
    deps = _deps(artifacts.render_pom(artifacts.cassandra_artifacts()))
    assert deps == {"cassandra-all": (version("CASSANDRA_VERSION"), [])}


def test_spark_kafka_pom_swaps_the_token_provider_and_drops_what_pyspark_ships() -> None:
    deps = _deps(artifacts.render_pom(artifacts.spark_kafka_artifacts()))
    scala = version("SCALA_BINARY_VERSION")
    connector_version, exclusions = deps[f"spark-sql-kafka-0-10_{scala}"]
    assert connector_version == version("SPARK_VERSION")
    assert f"org.apache.spark:spark-token-provider-kafka-0-10_{scala}" in exclusions
    assert "org.scala-lang:scala-library" in exclusions
    assert "org.apache.hadoop:hadoop-client-runtime" in exclusions
    assert deps[f"spark-token-provider-kafka-0-10_{scala}"][0] == version(
        "SPARK_KAFKA_TOKEN_PROVIDER_VERSION"
    )


def test_pom_is_deterministic_and_escaped() -> None:
    odd = artifacts.ArtifactSet(
        name="odd", purpose="a <b> & c", dependencies=(artifacts.Dependency("g", "a", "1"),)
    )
    assert artifacts.render_pom(odd) == artifacts.render_pom(odd)
    ET.fromstring(artifacts.render_pom(odd))  # well-formed despite < > &


def test_maven_settings_skip_every_repository_but_the_default_one() -> None:
    text = artifacts.MAVEN_SETTINGS.read_text(encoding="utf-8")
    root = ET.fromstring(text)
    ns = {"s": "http://maven.apache.org/SETTINGS/1.2.0"}
    assert root.findtext("s:mirrors/s:mirror/s:mirrorOf", namespaces=ns) == "*,!central"
    assert root.findtext("s:mirrors/s:mirror/s:url", namespaces=ns).startswith("file://")


def test_cache_is_fresh_only_for_the_same_pom(tmp_path: Path) -> None:
    kafka = artifacts.kafka_artifacts()
    folder = kafka.folder(tmp_path)
    assert not artifacts.is_fresh(kafka, tmp_path)
    folder.mkdir(parents=True)
    (folder / "kafka-clients.jar").write_bytes(b"")
    stamp = {"pom_sha256": artifacts.pom_digest(artifacts.render_pom(kafka))}
    (folder / artifacts.STAMP_NAME).write_text(json.dumps(stamp))
    assert artifacts.is_fresh(kafka, tmp_path)
    (folder / artifacts.STAMP_NAME).write_text(json.dumps({"pom_sha256": "other"}))
    assert not artifacts.is_fresh(kafka, tmp_path)


def test_missing_mvn_is_a_prerequisite_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from userstream.errors import PrerequisiteError

    monkeypatch.setattr(artifacts.shutil, "which", lambda _name: None)
    with pytest.raises(PrerequisiteError, match="mvn"):
        artifacts.find_mvn()
