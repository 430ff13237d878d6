"""Every operator CRD and every object of the userstream chart is accepted by a real kube-apiserver.

Objects are server-side applied with strict field validation: core validation, the CRDs' OpenAPI
schemas (unknown fields rejected, not pruned), admission and defaulting all run as in a cluster.
Nothing is scheduled: there is no kubelet, controller manager or operator behind the API server.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from cluster_api import KubeApiServer, api_error_message, dynamic_client
from cluster_manifests import (
    CI_VALUES,
    CRDS_ABSENT,
    NAMESPACE,
    Loaded,
    Manifest,
    Outcome,
    operator_crd_files,
    other_value_profiles,
    profile_namespace,
    render_userstream_chart,
    server_side_apply,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

CRD_FILES = operator_crd_files()
CHART = render_userstream_chart()
PROFILES = {
    values.name: render_userstream_chart(values, profile_namespace(values))
    for values in other_value_profiles()
}


def _params(loaded: Loaded) -> list[pytest.ParameterSet]:
    if loaded.problem is None:
        return [pytest.param(manifest.id, id=manifest.id) for manifest in loaded.manifests]
    if loaded.fatal:
        return [pytest.param(None, id="render")]
    return [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=loaded.problem))]


def _crd_params(files: list[str]) -> list[pytest.ParameterSet]:
    if files:
        return [pytest.param(name, id=name) for name in files]
    return [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=CRDS_ABSENT))]


def _check(outcome: Outcome | None, what: str) -> None:
    assert outcome is not None, f"{what}: never applied (see the fixture's log)"
    if outcome.skip:
        pytest.skip(outcome.skip)
    assert outcome.error is None, f"kube-apiserver rejected {what}: {outcome.error}"


@pytest.mark.parametrize("crd_file", _crd_params(CRD_FILES))
def test_operator_crds_are_established(crd_file: str, established_crds: dict[str, Outcome]) -> None:
    _check(established_crds.get(crd_file), f"the CRDs of .cache/crds/{crd_file}")


@pytest.mark.parametrize("object_id", _params(CHART))
def test_chart_object_is_accepted(object_id: str | None, applied_chart: dict[str, Outcome]) -> None:
    if object_id is None:
        pytest.fail(CHART.problem or "chart did not render")
    _check(applied_chart.get(object_id), f"{object_id} (helm template userstream charts/userstream)")


def _profile_params() -> list[pytest.ParameterSet]:
    params = []
    for name, loaded in PROFILES.items():
        if loaded.problem is None:
            params += [pytest.param(f"{name}:{m.id}", id=f"{name}:{m.id}") for m in loaded.manifests]
        else:
            params.append(pytest.param(f"{name}:", id=f"{name}:render"))
    return params or [
        pytest.param(None, id="none", marks=pytest.mark.skip(reason="no other ci/ value profile"))
    ]


@pytest.mark.parametrize("object_id", _profile_params())
def test_chart_object_of_every_value_profile_is_accepted(
    object_id: str | None, applied_profiles: dict[str, Outcome]
) -> None:
    """The chart with its other ci/ profiles (e.g. cloud-values.yaml), each in its own namespace."""
    assert object_id is not None
    profile = object_id.partition(":")[0]
    if problem := PROFILES[profile].problem:
        pytest.fail(problem)
    _check(applied_profiles.get(object_id), f"{object_id} (helm template ... -f ci/{profile})")


def test_every_ci_profile_is_applied() -> None:
    """A new ci/ value profile is applied without naming it here: the kind profile in namespace
    userstream, every other one (cloud, local-cluster, ...) in its own."""
    assert {p.name for p in CI_VALUES.parent.glob("*.yaml")} == {CI_VALUES.name, *PROFILES}
    assert "local-cluster-values.yaml" in PROFILES


def test_accepted_chart_objects_are_stored(
    kube_apiserver: KubeApiServer, api_client: k8s.ApiClient, applied_chart: dict[str, Outcome]
) -> None:
    """Read back every accepted object: it is in etcd, with a uid, where the chart put it."""
    if CHART.problem:
        pytest.skip(CHART.problem)
    dynamic = dynamic_client(api_client, kube_apiserver.work)
    accepted = [m for m in CHART.manifests if applied_chart.get(m.id) == Outcome()]
    assert accepted, "the API server accepted no object of the chart"
    for manifest in accepted:
        resource = dynamic.resources.get(api_version=manifest.api_version, kind=manifest.kind)
        namespace = manifest.body["metadata"].get("namespace", NAMESPACE) if resource.namespaced else None
        stored = resource.get(name=manifest.name, namespace=namespace)
        assert stored.metadata.uid, f"{manifest.id} has no uid"


# The tier must be able to fail: mistakes of the kind a chart edit makes are rejected, not stored.
def _mutated(kind: str, mutate: Callable[[dict[str, Any]], None]) -> Manifest:
    if CHART.problem:
        pytest.skip(CHART.problem)
    original = next((m for m in CHART.manifests if m.kind == kind), None)
    if original is None:
        pytest.skip(f"the chart renders no {kind}")
    body = copy.deepcopy(original.body)
    mutate(body)
    return Manifest(body=body, source=f"{original.id}, mutated")


UNKNOWN_FIELD = ".spec.replicaz: field not declared in schema"


def _misspell_spec_field(body: dict[str, Any]) -> None:
    body["spec"]["replicaz"] = 3  # a typo of a real field


def _wrong_type(body: dict[str, Any]) -> None:
    body["spec"]["partitions"] = "three"


def _bad_container_name(body: dict[str, Any]) -> None:
    body["spec"]["template"]["spec"]["containers"][0]["name"] = "Not_A_DNS_Label"


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        pytest.param("Kafka", _misspell_spec_field, UNKNOWN_FIELD, id="custom-unknown-field"),
        pytest.param("KafkaTopic", _wrong_type, ".spec.partitions: expected numeric", id="custom-wrong-type"),
        pytest.param("Job", _misspell_spec_field, UNKNOWN_FIELD, id="core-unknown-field"),
        pytest.param("Job", _bad_container_name, "containers[0].name: Invalid value", id="core-invalid"),
    ],
)
def test_mistakes_are_rejected(
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    expected: str,
    kube_apiserver: KubeApiServer,
    api_client: k8s.ApiClient,
    applied_chart: dict[str, Outcome],
) -> None:
    manifest = _mutated(kind, mutate)
    dynamic = dynamic_client(api_client, kube_apiserver.work)
    with pytest.raises(ApiException) as rejected:
        server_side_apply(dynamic, manifest, dry_run=True)
    message = api_error_message(rejected.value)
    # server-side apply reports a patch that does not fit the schema as 500 "failed to create typed
    # patch object"; the message says which field
    assert rejected.value.status in {400, 422, 500}, message
    assert expected in message, message
