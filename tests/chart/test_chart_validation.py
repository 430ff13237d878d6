"""Every object the chart renders, in every profile, is valid for its API: core objects against the
Kubernetes schemas of versions.env's KUBERNETES_VERSION (strict: unknown fields fail), custom
resources against the openAPIV3Schema of their operator's real CRD."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_helpers import CHART, CI_VALUES, VERSIONS, crd_schema_for, render_chart, render_error, run_helm

pytestmark = pytest.mark.chart

PROFILES = [pytest.param((), id="defaults")] + [pytest.param((f,), id=f.stem) for f in CI_VALUES]
CUSTOM_GROUPS = ("kafka.strimzi.io", "k8ssandra.io", "postgresql.cnpg.io", "sparkoperator.k8s.io")


def _is_custom(doc: dict) -> bool:
    return doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS


def test_ci_profiles_exist() -> None:
    assert {f.name for f in CI_VALUES} >= {
        "kind-values.yaml",
        "cloud-values.yaml",
        "local-cluster-values.yaml",
    }


@pytest.mark.parametrize("values_files", PROFILES)
def test_helm_lint_strict(values_files: tuple[Path, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", "userstream"]
    for f in values_files:
        args += ["--values", str(f)]
    out = run_helm(*args)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values_files", PROFILES)
def test_core_objects_validate_strictly(values_files: tuple[Path, ...]) -> None:
    docs = [d for d in render_chart(values_files=values_files) if not _is_custom(d)]
    assert docs
    version = VERSIONS["KUBERNETES_VERSION"]
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {exc.message}"
            )


CUSTOM_KINDS = [
    ("kafka.strimzi.io", "Kafka"),
    ("kafka.strimzi.io", "KafkaNodePool"),
    ("kafka.strimzi.io", "KafkaTopic"),
    ("kafka.strimzi.io", "KafkaUser"),
    ("k8ssandra.io", "K8ssandraCluster"),
    ("postgresql.cnpg.io", "Cluster"),
    ("sparkoperator.k8s.io", "SparkApplication"),
]


# The operator each group's objects belong to: a profile in external mode for it renders none
# (tests/chart/test_chart_external.py checks that they are absent).
OPERATOR_VALUES = {"kafka.strimzi.io": "kafka", "k8ssandra.io": "cassandra", "postgresql.cnpg.io": "postgres"}


def _crd_params() -> list[pytest.ParameterSet]:
    params = []
    for profile in PROFILES:
        (values_files,) = profile.values
        values = yaml.safe_load(values_files[0].read_text()) if values_files else {}
        for group, kind in CUSTOM_KINDS:
            server = values.get(OPERATOR_VALUES.get(group, ""), {})
            if server.get("enabled", True) is False:
                continue  # external mode: the platform runs that server
            params.append(pytest.param(values_files, group, kind, id=f"{kind}-{profile.id}"))
    return params


@pytest.mark.parametrize(("values_files", "group", "kind"), _crd_params())
def test_custom_resources_match_their_crd(values_files: tuple[Path, ...], group: str, kind: str) -> None:
    docs = [d for d in render_chart(values_files=values_files) if d["apiVersion"].startswith(group + "/")]
    docs = [d for d in docs if d["kind"] == kind]
    assert docs, f"the chart renders no {kind}"
    for doc in docs:
        schema = crd_schema_for(doc)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{kind}/{doc['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors[:5]
        )


def test_crd_validation_catches_unknown_fields() -> None:
    """The strictness the CRD check relies on: a misspelt field fails it."""
    doc = render_chart(show_only=["templates/streaming/sparkapplication.yaml"])[0]
    doc["spec"]["driver"]["coress"] = 1
    assert list(jsonschema.Draft7Validator(crd_schema_for(doc)).iter_errors(doc))


def test_only_expected_kinds_are_rendered() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in render_chart()}
    assert kinds == {
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolumeClaim"),
        ("batch/v1", "Job"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("kafka.strimzi.io/v1", "Kafka"),
        ("kafka.strimzi.io/v1", "KafkaNodePool"),
        ("kafka.strimzi.io/v1", "KafkaTopic"),
        ("kafka.strimzi.io/v1", "KafkaUser"),
        ("k8ssandra.io/v1alpha1", "K8ssandraCluster"),
        ("postgresql.cnpg.io/v1", "Cluster"),
        ("sparkoperator.k8s.io/v1beta2", "SparkApplication"),
    }


def test_every_object_is_namespaced_by_the_release() -> None:
    for doc in render_chart():
        assert "namespace" not in doc["metadata"], f"{doc['kind']} hard-codes a namespace"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "userstream"


class TestValuesSchema:
    def test_values_yaml_matches_the_schema(self) -> None:
        schema = json.loads((CHART / "values.schema.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
        assert not errors, [e.message for e in errors]

    @pytest.mark.parametrize("values_file", CI_VALUES, ids=[f.stem for f in CI_VALUES])
    def test_ci_values_match_the_schema(self, values_file: Path) -> None:
        schema = json.loads((CHART / "values.schema.json").read_text())
        base = yaml.safe_load((CHART / "values.yaml").read_text())
        overlay = yaml.safe_load(values_file.read_text())
        merged = _merge(base, overlay)
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(merged))
        assert not errors, [e.message for e in errors]

    def test_every_object_forbids_unknown_keys(self) -> None:
        schema = json.loads((CHART / "values.schema.json").read_text())

        def walk(node: dict, where: str) -> None:
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{where or '<root>'} accepts unknown keys"
                for key, child in node["properties"].items():
                    walk(child, f"{where}.{key}")
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], f"{where}[]")

        walk(schema, "")

    def test_every_value_is_described(self) -> None:
        schema = json.loads((CHART / "values.schema.json").read_text())
        values = yaml.safe_load((CHART / "values.yaml").read_text())

        def walk(value: object, node: dict, where: str) -> None:
            assert node.get("description") or where == "", f"{where} has no description in values.schema.json"
            if isinstance(value, dict) and "properties" in node:
                for key, child in value.items():
                    assert key in node["properties"], f"{where}.{key} is not in values.schema.json"
                    walk(child, node["properties"][key], f"{where}.{key}")

        walk(values, schema, "")

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"unknownKey": 1}, "additional properties 'unknownKey' not allowed"),
            ({"streaming": {"driver": {"cpus": 2}}}, "additional properties 'cpus' not allowed"),
            ({"kafka": {"topic": {"name": "bad topic"}}}, "/kafka/topic/name"),
            ({"streaming": {"restartPolicy": {"type": "Never"}}}, "/streaming/restartPolicy/type"),
            ({"settings": {"extraEnv": {"USERSTREAM_KAFKA_PASSWORD": "x"}}}, "invalid propertyName"),
        ],
    )
    def test_helm_rejects_bad_values(self, values: dict, message: str) -> None:
        assert message in render_error(values)


def _merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
