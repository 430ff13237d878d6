from __future__ import annotations

import pytest

from userstream.errors import UserstreamError
from userstream.settings import SettingsError, load_settings, replication_options


def test_defaults_describe_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("USERSTREAM_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_topic == "users_created"
    assert settings.kafka_dlq_topic == "users_created.dlq"
    assert settings.cassandra_keyspace == "spark_streams"
    assert settings.replication == {"class": "SimpleStrategy", "replication_factor": "1"}


def test_lists_are_read_as_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_KAFKA_BOOTSTRAP_SERVERS", "a:9092, b:9093")
    monkeypatch.setenv("USERSTREAM_CASSANDRA_CONTACT_POINTS", "c1,c2")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == ["a:9092", "b:9093"]
    assert settings.cassandra_contact_points == ["c1", "c2"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USERSTREAM_KAFKA_BOOTSTRAP_SERVERS", "no-port"),
        ("USERSTREAM_KAFKA_TOPIC", "bad topic!"),
        ("USERSTREAM_CASSANDRA_PORT", "0"),
        ("USERSTREAM_CASSANDRA_KEYSPACE", "Bad-Name"),
        ("USERSTREAM_CASSANDRA_REPLICATION", "SimpleStrategy:zero"),
        ("USERSTREAM_INGEST_BATCH_SIZE", "6000"),
        ("USERSTREAM_POSTGRES_DSN", "not a dsn"),
        ("USERSTREAM_SOURCE", "ftp"),
    ],
)
def test_a_wrong_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_sasl_without_credentials_is_rejected_by_every_kafka_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    # the Cassandra migration shares the ConfigMap but gets no Kafka Secret: it must start
    settings = load_settings()
    with pytest.raises(SettingsError, match="USERSTREAM_KAFKA_USERNAME"):
        settings.kafka_client_options()
    with pytest.raises(SettingsError, match="USERSTREAM_KAFKA_USERNAME"):
        settings.spark_kafka_options()


def test_same_topic_for_data_and_dead_letters_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_KAFKA_DLQ_TOPIC", "users_created")
    with pytest.raises(SettingsError, match="USERSTREAM_KAFKA_DLQ_TOPIC"):
        load_settings()


def test_scram_options_for_spark_hide_nothing_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("USERSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("USERSTREAM_KAFKA_USERNAME", "ingest")
    monkeypatch.setenv("USERSTREAM_KAFKA_PASSWORD", "s3cret")
    settings = load_settings()
    options = settings.spark_kafka_options()
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert 'username="ingest" password="s3cret"' in options["kafka.sasl.jaas.config"]
    assert "s3cret" not in repr(settings)


def test_network_topology_replication() -> None:
    assert replication_options("NetworkTopologyStrategy:dc1=3,dc2=2") == {
        "class": "NetworkTopologyStrategy",
        "dc1": "3",
        "dc2": "2",
    }
    with pytest.raises(ValueError, match="strategy"):
        replication_options("LocalStrategy:1")


def test_settings_env_round_trips_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from userstream.settings import settings_env

    original = load_settings(
        kafka_bootstrap_servers="k1:1,k2:2",
        kafka_topic="t1",
        kafka_dlq_topic="t1.dlq",
        cassandra_password="pw",
        cassandra_username="u",
        ingest_batch_size=77,
    )
    env = settings_env(original, base={"USERSTREAM_KAFKA_TOPIC": "stale", "PATH": "/bin"})
    assert env["PATH"] == "/bin"
    assert env["USERSTREAM_KAFKA_TOPIC"] == "t1"
    assert env["USERSTREAM_CASSANDRA_PASSWORD"] == "pw"
    for name in list(__import__("os").environ):
        if name.startswith("USERSTREAM_"):
            monkeypatch.delenv(name)
    for key, value in env.items():
        if key.startswith("USERSTREAM_"):
            monkeypatch.setenv(key, value)
    assert load_settings() == original


def test_an_ingest_seed_is_an_integer_or_a_stable_digest_of_text() -> None:
    from userstream.cli.pipeline import seed_number, with_seed

    assert seed_number("42") == 42
    run = "manual__2026-11-21T21:34:48.254667+00:00"
    assert seed_number(run) == seed_number(run)  # a retry of a run gets the same users
    assert seed_number(run) != seed_number(run + "x")
    settings = with_seed(load_settings(), run)
    assert settings.synthetic_seed == seed_number(run)
    assert settings.randomuser_seed == run
    with pytest.raises(UserstreamError, match="--seed"):
        seed_number("  ")


def test_a_misspelled_variable_fails_naming_the_closest_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_KAFKA_TOPIK", "users")
    with pytest.raises(
        SettingsError, match=r"USERSTREAM_KAFKA_TOPIK .*did you mean USERSTREAM_KAFKA_TOPIC\?"
    ):
        load_settings()


def test_variables_read_elsewhere_are_not_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSTREAM_CASSANDRA_WRITER_ROLE", "w")  # the migration's roles
    monkeypatch.setenv("USERSTREAM_VERSIONS_FILE", "/opt/userstream/versions.env")
    assert load_settings().kafka_topic == "users_created"


def test_docs_configuration_lists_every_setting_as_generated() -> None:
    from pathlib import Path

    from userstream.settings import configuration_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert docs.read_text(encoding="utf-8") == configuration_markdown(), (
        "docs/configuration.md is stale: python -m userstream.settings > docs/configuration.md"
    )


def test_kubernetes_service_links_are_not_mistaken_for_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # what a pod gets for a Service userstream-staging-rw in its namespace
    links = {
        "USERSTREAM_STAGING_RW_SERVICE_HOST": "10.96.0.7",
        "USERSTREAM_STAGING_RW_SERVICE_PORT": "5432",
        "USERSTREAM_STAGING_RW_SERVICE_PORT_POSTGRES": "5432",
        "USERSTREAM_STAGING_RW_PORT": "tcp://10.96.0.7:5432",
        "USERSTREAM_STAGING_RW_PORT_5432_TCP": "tcp://10.96.0.7:5432",
        "USERSTREAM_STAGING_RW_PORT_5432_TCP_ADDR": "10.96.0.7",
        "USERSTREAM_STAGING_RW_PORT_5432_TCP_PORT": "5432",
        "USERSTREAM_STAGING_RW_PORT_5432_TCP_PROTO": "tcp",
    }
    for name, value in links.items():
        monkeypatch.setenv(name, value)
    assert load_settings().kafka_topic == "users_created"
    # a misspelled port setting is still caught
    monkeypatch.setenv("USERSTREAM_CASANDRA_PORT", "9042")
    with pytest.raises(SettingsError, match=r"USERSTREAM_CASANDRA_PORT .*USERSTREAM_CASSANDRA_PORT"):
        load_settings()
