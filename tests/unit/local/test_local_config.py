"""Configuration the local stack renders for Kafka, Cassandra and PostgreSQL (no servers)."""

from __future__ import annotations

from pathlib import Path

import yaml

from userstream.local import cassandra, kafka, postgres
from userstream.settings import load_settings


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _kafka_props(tmp_path: Path, **extra: object) -> dict[str, str]:
    return _properties(
        kafka.render_server_properties(
            host="127.0.0.1",
            port=19092,
            controller_port=19093,
            log_dirs=tmp_path,
            admin="userstream-admin",
            admin_password="pw-admin",
            **extra,  # type: ignore[arg-type]
        )
    )


def test_kafka_properties_single_combined_node(tmp_path: Path) -> None:
    props = _kafka_props(tmp_path)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "LOCAL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "LOCAL://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path)
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor"):
        assert props[key] == "1"


def test_kafka_properties_authenticate_every_listener_and_authorize_by_acl(tmp_path: Path) -> None:
    props = _kafka_props(tmp_path)
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,LOCAL:SASL_PLAINTEXT"
    assert "PLAINTEXT://" not in props["listeners"]
    assert props["listener.name.local.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["listener.name.controller.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="userstream-admin" password="pw-admin" user_userstream-admin="pw-admin";'
    )
    assert props["listener.name.local.scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="userstream-admin" password="pw-admin";'
    )
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:userstream-admin"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert not any(key.startswith("listener.name.external") for key in props)


def test_kafka_external_listener_is_optional_and_advertised(tmp_path: Path) -> None:
    props = _kafka_props(tmp_path, external=("10.234.0.1", 9094))
    assert props["listeners"] == (
        "LOCAL://127.0.0.1:19092,EXTERNAL://10.234.0.1:9094,CONTROLLER://127.0.0.1:19093"
    )
    assert props["advertised.listeners"] == "LOCAL://127.0.0.1:19092,EXTERNAL://10.234.0.1:9094"
    assert "EXTERNAL:SASL_PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert props["listener.name.external.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    settings = load_settings(local_external_address="10.234.0.1", local_kafka_external_port=19094)
    server = kafka.KafkaServer(settings)
    assert server.external == ("10.234.0.1", 19094)
    assert [p.port for p in server.ports()][-1] == 19094
    assert kafka.KafkaServer(load_settings()).external is None


def test_kafka_scram_format_argument_carries_a_salted_password_only() -> None:
    import base64
    import hashlib
    import re

    argument = kafka.scram_format_argument("userstream-admin", "s3cret", salt=b"0123456789")
    assert "s3cret" not in argument
    match = re.fullmatch(
        r'SCRAM-SHA-512=\[name=userstream-admin,iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]',
        argument,
    )
    assert match is not None
    iterations, salt, salted = int(match[1]), base64.b64decode(match[2]), base64.b64decode(match[3])
    assert salt == b"0123456789"
    assert iterations >= 4096  # Kafka's minimum for SCRAM-SHA-512
    assert salted == hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, iterations)


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
    assert doc["authenticator"] == "PasswordAuthenticator"
    assert doc["authorizer"] == "CassandraAuthorizer"
    assert doc["role_manager"] == "CassandraRoleManager"
    assert doc["rpc_address"] == doc["broadcast_rpc_address"] == "127.0.0.1"


def test_cassandra_native_transport_on_the_external_address() -> None:
    doc = yaml.safe_load(
        cassandra.render_cassandra_yaml(
            host="127.0.0.1",
            native_port=19042,
            storage_port=17000,
            cluster_name="c",
            rpc_address="10.234.0.1",
        )
    )
    assert doc["rpc_address"] == doc["broadcast_rpc_address"] == "10.234.0.1"
    assert doc["listen_address"] == "127.0.0.1"  # storage stays on loopback
    server = cassandra.CassandraServer(
        load_settings(local_external_address="10.234.0.1", cassandra_port=9042)
    )
    assert server.address == "10.234.0.1:9042"
    assert cassandra.CassandraServer(load_settings(cassandra_port=9042)).address == "127.0.0.1:9042"


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
