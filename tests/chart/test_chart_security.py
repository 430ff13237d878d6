"""Security properties of everything the chart renders, in every profile."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from chart_helpers import CI_VALUES, by_kind, pod_specs, render_chart

pytestmark = pytest.mark.chart

PROFILES = [pytest.param((), id="defaults")] + [pytest.param((f,), id=f.stem) for f in CI_VALUES]
SECRET_ENV = re.compile(r"(PASSWORD|DSN|TOKEN|SECRET)$")


def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod securityContext, container-like spec) of every container the chart defines,
    including the Spark driver and executors the operator creates from the SparkApplication."""
    found = []
    for doc in docs:
        for where, pod in pod_specs(doc):
            for container in pod.get("initContainers", []) + pod["containers"]:
                found.append((f"{where}/{container['name']}", pod.get("securityContext", {}), container))
        if doc["kind"] == "SparkApplication":
            for role in ("driver", "executor"):
                spec = doc["spec"][role]
                found.append((f"SparkApplication/{role}", spec.get("podSecurityContext", {}), spec))
    return found


@pytest.mark.parametrize("values_files", PROFILES)
def test_every_container_is_locked_down(values_files: tuple[Path, ...]) -> None:
    containers = _containers(render_chart(values_files=values_files))
    assert len(containers) >= 3
    for where, pod_context, container in containers:
        context = container["securityContext"]
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
        assert pod_context.get("runAsUser", 1) != 0, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in context["capabilities"], where
        assert context.get("privileged", False) is False, where
        seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}, where
        assert context["readOnlyRootFilesystem"] is True, where


# The only Secrets the chart renders: the Cassandra client roles' credentials, whose passwords the
# chart generates (randAlphaNum, kept with lookup); every other Secret comes from an operator.
GENERATED_SECRETS = {"userstream-cassandra-writer", "userstream-cassandra-reader"}


@pytest.mark.parametrize("values_files", PROFILES)
def test_secrets_only_by_reference(values_files: tuple[Path, ...]) -> None:
    docs = render_chart(values_files=values_files)
    names = {d["metadata"]["name"] for d in by_kind(docs, "Secret")}
    assert names <= GENERATED_SECRETS, "the chart carries no Secret but the generated role credentials"
    for where, _, container in _containers(docs):
        for env in container.get("env", []):
            if SECRET_ENV.search(env["name"]):
                assert "value" not in env, f"{where}: {env['name']} has a literal value"
                assert set(env["valueFrom"]) == {"secretKeyRef"}, where


@pytest.mark.parametrize("values_files", PROFILES)
def test_no_literal_password_in_the_render(values_files: tuple[Path, ...]) -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if re.search("password|passwd|secret_?key|token", str(key), re.IGNORECASE) and isinstance(
                    value, str
                ):
                    pytest.fail(f"{path}.{key} holds a literal value")
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, str):
            assert not re.search(r"password\s*[=:]\s*\S", node, re.IGNORECASE), f"{path}: {node[:80]}"

    for doc in render_chart(values_files=values_files):
        if doc["kind"] == "Secret" and doc["metadata"]["name"] in GENERATED_SECRETS:
            continue  # generated at render time (test_role_secrets_are_generated_not_configured)
        walk(doc, f"{doc['kind']}/{doc['metadata']['name']}")


def test_pods_that_need_no_api_get_no_token() -> None:
    for doc in render_chart():
        for where, pod in pod_specs(doc):
            assert pod.get("automountServiceAccountToken") is False, where


def test_resources_are_bounded() -> None:
    for where, _, container in _containers(render_chart()):
        if "resources" in container:
            assert container["resources"]["limits"]["memory"], where
        else:  # the Spark driver and executors: Spark sets requests and limits from these
            assert container["memory"], where
            assert container["coreLimit"], where
