"""`userstream local cql|sql|topic` run non-interactively against the real local stack."""

from __future__ import annotations

import os
import subprocess
import sys

from userstream.settings import Settings


def userstream(
    settings: Settings, *args: str, stdin: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """The CLI as a newcomer runs it: only the stack's folders and addresses in the environment,
    the credentials found by the CLI in the stack's state folder."""
    env = {
        **os.environ,
        "USERSTREAM_STATE_DIR": str(settings.state_dir),
        "USERSTREAM_CACHE_DIR": str(settings.cache_dir),
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "userstream.cli", "local", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cql_executes_statements_as_the_chosen_role(stack_settings: Settings, unique_names: str) -> None:
    keyspace = f"it_cql_{unique_names}"
    created = userstream(
        stack_settings,
        "cql",
        "-e",
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1};"
        f"CREATE TABLE {keyspace}.notes (id int PRIMARY KEY, text text);"
        f"INSERT INTO {keyspace}.notes (id, text) VALUES (1, 'semi;colon in a string');"
        f"SELECT id, text FROM {keyspace}.notes",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[-2:] == ["1   semi;colon in a string", "(1 row)"]
    # the checks' reader role may not write: one clear line, exit 2
    refused = userstream(
        stack_settings, "cql", "--as", "reader", "-e", f"INSERT INTO {keyspace}.notes (id) VALUES (2)"
    )
    assert refused.returncode == 2
    assert "Unauthorized" in refused.stderr
    assert "Traceback" not in refused.stderr
    userstream(stack_settings, "cql", "-e", f"DROP KEYSPACE {keyspace}")


def test_cql_reads_statements_from_stdin(stack_settings: Settings, unique_names: str) -> None:
    # before the first migration the pipeline's keyspace does not exist: the shell still opens
    result = userstream(
        stack_settings,
        "cql",
        stdin="SELECT cluster_name\n  FROM system.local;\nSELECT bad syntax;\nexit\n",
        USERSTREAM_CASSANDRA_KEYSPACE=f"it_none_{unique_names}",
    )
    assert result.returncode == 1  # one statement failed
    lines = result.stdout.splitlines()
    assert lines[0] == "cluster_name"
    assert lines[2] == "(1 row)"
    assert any(line.startswith("error: ") for line in lines)


def test_sql_runs_psql_on_the_staging_database(stack_settings: Settings) -> None:
    result = userstream(stack_settings, "sql", "-e", "SELECT 6 * 7 AS answer, current_database() AS db")
    assert result.returncode == 0, result.stderr
    assert "answer" in result.stdout
    assert "42" in result.stdout
    database = stack_settings.postgres_dsn.get_secret_value().rsplit("/", 1)[-1]
    assert database in result.stdout
    failed = userstream(stack_settings, "sql", "-e", "SELECT * FROM no_such_table")
    assert failed.returncode != 0
    assert "no_such_table" in failed.stderr


def test_topic_prints_messages_with_headers(stack_settings: Settings, unique_names: str) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"it_tools_{unique_names}.dlq"
    admin = KafkaAdminClient(
        bootstrap_servers=stack_settings.kafka_bootstrap, **stack_settings.kafka_client_options()
    )
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=stack_settings.kafka_bootstrap, **stack_settings.kafka_client_options()
    )
    for n in range(3):
        producer.send(
            topic, key=f"k{n}".encode(), value=b'{"n": %d}' % n, headers=[("dlq.reason", b"invalid_email")]
        )
    producer.flush()
    producer.close()

    two = userstream(stack_settings, "topic", topic, "--from-beginning", "--max", "2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.splitlines() == [
        f"{topic}[0]@0 key=k0",
        "  dlq.reason: invalid_email",
        '  value: {"n": 0}',
        f"{topic}[0]@1 key=k1",
        "  dlq.reason: invalid_email",
        '  value: {"n": 1}',
    ]
    # without --max it stops at the end the topic had when reading started
    everything = userstream(stack_settings, "topic", topic, "--from-beginning")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.count("dlq.reason: invalid_email") == 3

    wrong = userstream(stack_settings, "topic", topic.replace(".dlq", "_dlq"), "--from-beginning")
    assert wrong.returncode == 2
    assert f"did you mean {topic}?" in wrong.stderr
