"""Configuration the local stack renders for Kafka, Cassandra and PostgreSQL (no servers)."""

from __future__ import annotations

from pathlib import Path

import yaml

from userstream.local import cassandra, kafka, postgres
from userstream.settings import load_settings


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_kafka_properties_single_combined_node(tmp_path: Path) -> None:
    props = _properties(
        kafka.render_server_properties(host="127.0.0.1", port=19092, controller_port=19093, log_dirs=tmp_path)
    )
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path)
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "1"


def test_kafka_cluster_id_is_22_char_base64url() -> None:
    ids = {kafka.new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 22 and "=" not in i and "+" not in i and "/" not in i for i in ids)


def test_kafka_ports_follow_settings(tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:29092", local_kafka_controller_port=29093, state_dir=tmp_path
    )
    server = kafka.KafkaServer(settings)
    assert [p.port for p in server.ports()] == [29092, 29093]
    assert server.marker == str(tmp_path.resolve() / "kafka" / "server.properties")


def test_cassandra_yaml_is_minimal_and_uses_settings() -> None:
    doc = yaml.safe_load(
        cassandra.render_cassandra_yaml(
            host="127.0.0.1", native_port=19042, storage_port=17000, cluster_name="c"
        )
    )
    assert doc["native_transport_port"] == 19042
    assert doc["storage_port"] == 17000
    assert doc["seed_provider"][0]["parameters"][0]["seeds"] == "127.0.0.1:17000"
    assert doc["endpoint_snitch"] == "SimpleSnitch"  # data center 'datacenter1'
    assert doc["auto_snapshot"] is False
    assert doc["num_tokens"] == 1


def test_cassandra_module_flags_cover_the_java17_needs() -> None:
    flags = cassandra.module_access_flags()
    assert "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED" in flags
    assert "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED" in flags
    assert len(flags) == len(set(flags))


def test_cassandra_command_has_agent_heap_and_config(tmp_path: Path) -> None:
    jars = tmp_path / "cache" / "jars" / "cassandra"
    jars.mkdir(parents=True)
    (jars / "jamm-0.4.0.jar").write_bytes(b"")
    server = cassandra.CassandraServer(
        load_settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    )
    argv = server.command()
    assert f"-javaagent:{jars / 'jamm-0.4.0.jar'}" in argv
    assert "-Xmx1g" in argv
    assert f"-Dcassandra.config=file://{server.config_file}" in argv
    assert argv[-1] == cassandra.MAIN_CLASS


def test_postgres_dsn_parts_and_options() -> None:
    parts = postgres.dsn_parts("postgresql://userstream@127.0.0.1:15432/userstream")
    assert (parts["host"], parts["port"], parts["user"], parts["dbname"]) == (
        "127.0.0.1",
        15432,
        "userstream",
        "userstream",
    )
    defaults = postgres.dsn_parts("host=127.0.0.1 user=app")
    assert (defaults["port"], defaults["dbname"]) == (5432, "app")
    options = postgres.server_options(host="127.0.0.1", port=15432)
    assert "listen_addresses=127.0.0.1" in options
    assert "port=15432" in options
    assert postgres.quote_ident('we"ird') == '"we""ird"'
