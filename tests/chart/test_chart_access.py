"""The chart's KafkaUsers carry exactly the ACLs of charts/userstream/files/access.yaml.

The local stack creates its users and ACLs from that file; this test renders the chart with the
real helm binary and compares, so the chart and the definition cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, CI_VALUES, RELEASE, by_kind, render_chart

from userstream import access
from userstream.settings import Settings

pytestmark = pytest.mark.chart


def _runs_strimzi(path: Path) -> bool:
    """A profile with the chart's own Kafka (Strimzi), hence KafkaUsers to compare."""
    return ((yaml.safe_load(path.read_text()) or {}).get("kafka") or {}).get("enabled", True) is not False


# profiles with an external Kafka render no KafkaUser: there the platform owns the users
PROFILES = [pytest.param((), id="defaults")] + [
    pytest.param((f,), id=f.stem) for f in CI_VALUES if _runs_strimzi(Path(f))
]


def _values(files: tuple[Any, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """The effective kafka values (defaults, then the profile files, then extra), one level deep."""
    merged = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]
    for f in files:
        layer = (yaml.safe_load(Path(f).read_text()) or {}).get("kafka") or {}
        for key, value in layer.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    for key, value in (extra.get("kafka") or {}).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) else value
    return merged


def _chart_acls(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    acls = user["spec"]["authorization"]["acls"]
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal"), op)
        for acl in acls
        for op in acl["operations"]
    }


def _definition_acls(definition: access.AccessDefinition, key: str) -> set[tuple[str, str, str, str]]:
    return {
        (acl.resource_type, acl.name, acl.pattern_type, op)
        for acl in definition.kafka_users[key].acls
        for op in acl.operations
    }


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="default-names"),
        pytest.param(
            {
                "kafka": {
                    "topic": {"name": "people"},
                    "dlqTopic": {"name": "people.rejected"},
                    "consumerGroupPrefix": "people-stream",
                    "progressGroup": "people-progress",
                }
            },
            id="other-names",
        ),
    ],
)
@pytest.mark.parametrize("files", PROFILES)
def test_kafka_users_equal_the_access_definition(files: tuple[Any, ...], extra: dict[str, Any]) -> None:
    docs = render_chart(extra, show_only=["templates/kafka/users.yaml"], values_files=files)
    users = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "KafkaUser")}
    assert users, "a profile with Strimzi renders KafkaUsers"
    values = _values(files, extra)
    cassandra = yaml.safe_load((CHART / "values.yaml").read_text())["cassandra"]
    definition = access.load_definition().resolved(
        {
            "topic": values["topic"]["name"],
            "dlqTopic": values["dlqTopic"]["name"],
            "consumerGroupPrefix": values["consumerGroupPrefix"],
            "progressGroup": values["progressGroup"],
            "keyspace": cassandra["keyspace"],
            "table": cassandra["table"],
        }
    )
    # the release is "userstream": the chart's full name, the prefix of every principal
    expected = {access.principal(key, RELEASE): key for key in definition.kafka_users}
    assert set(users) == set(expected), "KafkaUsers of the chart differ from the users of access.yaml"
    for name, key in expected.items():
        user = users[name]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["spec"]["authorization"]["type"] == "simple"
        assert _chart_acls(user) == _definition_acls(definition, key), f"ACLs of {name} drifted"


def test_the_chart_cassandra_role_names_are_the_definitions() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    roles = values["cassandra"].get("roles")
    if roles is None:
        pytest.skip("this chart defines no Cassandra roles (cassandra.roles) yet")
    definition = access.load_definition()
    assert {key: role.name for key, role in definition.cassandra_roles.items()} == roles


def test_the_default_consumer_group_prefix_is_the_definitions() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    definition = access.load_definition()
    assert values["kafka"]["consumerGroupPrefix"] == definition.names["consumerGroupPrefix"]
    assert values["kafka"]["progressGroup"] == definition.names["progressGroup"]
    # the chart's default names are the settings' defaults, which the local stack uses
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert values["kafka"]["topic"]["name"] == defaults["kafka_topic"]
    assert values["kafka"]["dlqTopic"]["name"] == defaults["kafka_dlq_topic"]
    assert values["kafka"]["progressGroup"] == defaults["stream_progress_group"]
    assert values["cassandra"]["keyspace"] == defaults["cassandra_keyspace"]
    assert values["cassandra"]["table"] == defaults["cassandra_table"]
