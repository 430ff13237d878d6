"""The access definition (charts/userstream/files/access.yaml) and the local stack's credentials."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from userstream import access
from userstream.local import credentials
from userstream.local.kafka import acl_objects
from userstream.settings import load_settings

MINIMAL = """
kafka:
  users:
    writer:
      acls:
        - resource: {type: topic, name: "${topic}"}
          operations: [Write]
cassandra:
  roles:
    reader:
      grants:
        - resource: {type: keyspace, name: "${keyspace}"}
          permissions: [SELECT]
"""


def test_the_repository_definition_loads_with_the_chart_names() -> None:
    definition = access.for_settings(load_settings())
    assert set(definition.kafka_users) == {"ingest", "stream", "health"}
    assert set(definition.cassandra_roles) == {"writer", "reader"}
    bindings = {
        (b.principal, b.resource_type, b.name, b.pattern_type, b.operation)
        for b in access.acl_bindings(definition)
    }
    assert bindings == {
        ("userstream-ingest", "topic", "users_created", "literal", "Write"),
        ("userstream-ingest", "topic", "users_created", "literal", "Describe"),
        ("userstream-stream", "topic", "users_created", "literal", "Read"),
        ("userstream-stream", "topic", "users_created", "literal", "Describe"),
        ("userstream-stream", "group", "spark-kafka-source", "prefix", "Read"),
        ("userstream-stream", "group", "userstream-stream-progress", "literal", "Read"),
        ("userstream-stream", "topic", "users_created.dlq", "literal", "Write"),
        ("userstream-stream", "topic", "users_created.dlq", "literal", "Describe"),
        # the health check: offsets only, no record (no Read anywhere)
        ("userstream-health", "topic", "users_created", "literal", "Describe"),
        ("userstream-health", "group", "userstream-stream-progress", "literal", "Describe"),
    }
    assert [g.statement for g in access.cql_grants(definition)] == [
        'GRANT MODIFY ON TABLE spark_streams.created_users TO "userstream_writer"',
        'GRANT SELECT ON TABLE spark_streams.created_users TO "userstream_reader"',
    ]


def test_names_follow_the_settings() -> None:
    settings = load_settings(
        kafka_topic="t1",
        kafka_dlq_topic="t1.dead",
        cassandra_keyspace="ks",
        cassandra_table="tb",
        stream_progress_group="g1",
    )
    definition = access.for_settings(settings)
    names = {b.name for b in access.acl_bindings(definition)}
    assert names == {"t1", "t1.dead", "spark-kafka-source", "g1"}
    assert {(g.keyspace, g.table) for g in access.cql_grants(definition)} == {("ks", "tb")}


def test_minimal_definition_keyspace_grant_and_default_pattern() -> None:
    definition = access.parse_definition(MINIMAL).resolved({"topic": "a", "keyspace": "k"})
    (binding,) = access.acl_bindings(definition, prefix="rel")
    assert binding == access.AclBinding("rel-writer", "topic", "a", "literal", "Write")
    (grant,) = access.cql_grants(definition, prefix="rel")
    assert grant.statement == 'GRANT SELECT ON KEYSPACE k TO "rel-reader"'


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (MINIMAL.replace("[Write]", "[Scribble]"), "Scribble"),
        (MINIMAL.replace("type: topic", "type: queue"), "queue"),
        (MINIMAL.replace("[SELECT]", "[READ]"), "READ"),
        (MINIMAL.replace("writer:", "Writer_1:"), "Writer_1"),
        (MINIMAL.replace("{type: keyspace", "{type: table"), "<keyspace>.<table>"),
        (MINIMAL + "extra: 1\n", "unknown keys"),
        (MINIMAL.replace("    reader:\n", "    reader:\n      name: Bad-Name\n"), "Bad-Name"),
        ("kafka: [", "not valid YAML"),
    ],
)
def test_malformed_definitions_are_refused_naming_the_place(broken: str, message: str) -> None:
    with pytest.raises(access.AccessError, match=message.replace(".", r"\.").replace("<", "<")):
        access.parse_definition(broken)


def test_a_placeholder_without_value_is_refused() -> None:
    with pytest.raises(access.AccessError, match=r"\$\{topic\}"):
        access.parse_definition(MINIMAL).resolved({"keyspace": "k"})


def test_role_names_are_quoted_cql_identifiers() -> None:
    assert access.cql_identifier("userstream-stream") == '"userstream-stream"'
    assert access.cql_identifier('a"b') == '"a""b"'


def test_acl_objects_map_every_operation_and_pattern() -> None:
    from kafka.admin import ACLOperation, ACLResourcePatternType, ResourceType

    bindings = [
        access.AclBinding("u", "topic", "t", "literal", "IdempotentWrite"),
        access.AclBinding("u", "group", "g", "prefix", "Read"),
        access.AclBinding("u", "cluster", "kafka-cluster", "literal", "DescribeConfigs"),
    ]
    objects = acl_objects(bindings)
    assert [o.operation for o in objects] == [
        ACLOperation.IDEMPOTENT_WRITE,
        ACLOperation.READ,
        ACLOperation.DESCRIBE_CONFIGS,
    ]
    assert objects[1].resource_pattern.pattern_type == ACLResourcePatternType.PREFIXED
    assert objects[1].resource_pattern.resource_type == ResourceType.GROUP
    assert {o.principal for o in objects} == {"User:u"}
    for operation in access.KAFKA_OPERATIONS:  # every operation the definition accepts maps
        acl_objects([access.AclBinding("u", "topic", "t", "literal", operation)])


# --- credentials -------------------------------------------------------------------------------
def test_credentials_are_generated_once_private_and_complete(tmp_path: Path) -> None:
    definition = access.load_definition()
    first = credentials.ensure(tmp_path, definition)
    folder = tmp_path / "credentials"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("kafka.json", "cassandra.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert set(first.kafka) == {
        "userstream-admin",
        "userstream-ingest",
        "userstream-stream",
        "userstream-health",
    }
    assert set(first.cassandra) == {"userstream-admin", "userstream_writer", "userstream_reader"}
    assert len(set(first.kafka.values())) == 4
    assert all(len(p) >= 32 for p in first.kafka.values())
    assert credentials.ensure(tmp_path, definition) == first  # stable
    assert credentials.load(tmp_path) == first


def test_a_principal_added_later_gets_a_password_and_the_others_keep_theirs(tmp_path: Path) -> None:
    small = access.parse_definition(MINIMAL)
    before = credentials.ensure(tmp_path, small)
    after = credentials.ensure(tmp_path, access.load_definition())
    assert after.kafka["userstream-admin"] == before.kafka["userstream-admin"]
    assert "userstream-ingest" in after.kafka
    assert after.kafka["userstream-writer"] == before.kafka["userstream-writer"]


def test_client_settings_pick_each_clients_principal(tmp_path: Path) -> None:
    found = credentials.ensure(tmp_path, access.load_definition())
    base = load_settings(
        state_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:9092", cassandra_contact_points="127.0.0.1"
    )
    ingest = credentials.client_settings(base, "ingest")
    assert ingest.kafka_security_protocol == "SASL_PLAINTEXT"
    assert ingest.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert ingest.kafka_username == "userstream-ingest"
    assert ingest.kafka_password is not None
    assert ingest.kafka_password.get_secret_value() == found.kafka["userstream-ingest"]
    assert ingest.cassandra_username is None  # the ingestion never talks to Cassandra
    stream = credentials.client_settings(base, "stream")
    assert (stream.kafka_username, stream.cassandra_username) == ("userstream-stream", "userstream_writer")
    checks = credentials.client_settings(base, "checks")
    assert (checks.kafka_username, checks.cassandra_username) == ("userstream-admin", "userstream_reader")
    admin = credentials.client_settings(base, "admin")
    assert (admin.kafka_username, admin.cassandra_username) == ("userstream-admin", "userstream-admin")
    options = stream.spark_kafka_options()
    assert 'username="userstream-stream"' in options["kafka.sasl.jaas.config"]


def test_explicit_settings_and_foreign_servers_win(tmp_path: Path) -> None:
    credentials.ensure(tmp_path, access.load_definition())
    explicit = load_settings(
        state_dir=tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username="someone",
        kafka_password="pw",
        cassandra_username="me",
        cassandra_password="pw",
    )
    assert credentials.client_settings(explicit, "stream") == explicit
    remote = load_settings(
        state_dir=tmp_path,
        kafka_bootstrap_servers="kafka.example:9092",
        cassandra_contact_points="db.example",
    )
    assert credentials.client_settings(remote, "stream") == remote
    assert (
        credentials.client_settings(load_settings(state_dir=tmp_path / "none"), "stream").kafka_username
        is None
    )


def test_external_address_makes_cassandra_clients_use_it(tmp_path: Path) -> None:
    credentials.ensure(tmp_path, access.load_definition())
    settings = load_settings(
        state_dir=tmp_path,
        local_external_address="10.234.0.1",
        kafka_bootstrap_servers="127.0.0.1:9092",
        cassandra_contact_points="127.0.0.1",
    )
    stream = credentials.client_settings(settings, "stream")
    assert stream.cassandra_contact_points == ["10.234.0.1"]
    assert stream.kafka_bootstrap_servers == ["127.0.0.1:9092"]  # loopback listener stays
    with pytest.raises(ValueError, match="not an IP address"):
        load_settings(local_external_address="veth0")
