"""Least privilege of the chart's ServiceAccounts, asked of the real RBAC authorizer.

Each check impersonates the ServiceAccount's user (``system:serviceaccount:<ns>:<name>``) and asks
the API server what that user may do (SelfSubjectAccessReview / SelfSubjectRulesReview), after the
chart's Roles and RoleBindings were applied. What the chart grants is read from the rendered chart,
so the expectations follow it; the baseline every authenticated user has is measured on an unbound
ServiceAccount, not written down here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from cluster_api import NAMESPACE, KubeApiServer
from cluster_manifests import (
    Manifest,
    Outcome,
    bound_service_accounts,
    render_userstream_chart,
    service_account_user,
)
from kubernetes import client as k8s

pytestmark = pytest.mark.cluster

AIRFLOW_WORKER = "airflow-worker"
INGEST = "userstream-ingest"
UNBOUND_PROBE = "rbac-baseline-probe"  # bound to nothing: what any ServiceAccount gets by default

Permission = tuple[str, str, str]  # (api group, resource[/subresource], verb)
AirflowBinding = tuple[str, Manifest]  # (namespace of the airflow-worker ServiceAccount, its RoleBinding)


@pytest.fixture(scope="module")
def chart() -> list[Manifest]:
    loaded = render_userstream_chart()
    if loaded.problem:
        pytest.skip(loaded.problem)
    return loaded.manifests


@pytest.fixture(scope="module")
def chart_rbac_applied(chart: list[Manifest], applied_chart: dict[str, Outcome]) -> None:
    rbac = [m for m in chart if m.kind in {"Role", "RoleBinding", "ServiceAccount"}]
    rejected = {m.id: applied_chart.get(m.id) for m in rbac if applied_chart.get(m.id) != Outcome()}
    assert not rejected, f"the chart's RBAC objects were not all accepted: {rejected}"


def _role_permissions(chart: list[Manifest], binding: Manifest) -> set[Permission]:
    ref = binding.body["roleRef"]
    roles = [m for m in chart if m.kind == ref["kind"] and m.name == ref["name"]]
    assert roles, f"{binding.id} refers to {ref['kind']}/{ref['name']}, which the chart does not render"
    return {
        (group, resource, verb)
        for rule in roles[0].body.get("rules") or []
        for group in rule.get("apiGroups") or [""]
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


class Subject:
    """Asks the API server what one impersonated user may do."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.authorization = k8s.AuthorizationV1Api(api_client)

    def can(self, verb: str, resource: str, namespace: str | None = NAMESPACE, group: str = "") -> bool:
        resource, _, subresource = resource.partition("/")
        review = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace,
                    verb=verb,
                    group=group,
                    resource=resource,
                    subresource=subresource or None,
                )
            )
        )
        return bool(self.authorization.create_self_subject_access_review(review).status.allowed)

    def permissions(self, namespace: str = NAMESPACE) -> set[Permission]:
        """Every (group, resource, verb) the authorizer lists for this user in ``namespace``."""
        review = k8s.V1SelfSubjectRulesReview(spec=k8s.V1SelfSubjectRulesReviewSpec(namespace=namespace))
        status = self.authorization.create_self_subject_rules_review(review).status
        assert not status.incomplete, f"rules review incomplete: {status.evaluation_error}"
        return {
            (group, resource, verb)
            for rule in status.resource_rules
            for group in rule.api_groups or [""]
            for resource in rule.resources or []
            for verb in rule.verbs
        }


AsUser = Callable[[str], Subject]


@pytest.fixture(scope="module")
def as_user(kube_apiserver: KubeApiServer) -> Iterator[Callable[[str], Subject]]:
    clients: list[k8s.ApiClient] = []

    def subject(user: str) -> Subject:
        clients.append(kube_apiserver.client(impersonate=user))
        return Subject(clients[-1])

    yield subject
    for api_client in clients:
        api_client.close()


@pytest.fixture(scope="module")
def baseline(as_user: AsUser) -> set[Permission]:
    return as_user(service_account_user(NAMESPACE, UNBOUND_PROBE)).permissions()


@pytest.fixture(scope="module")
def airflow_worker(chart: list[Manifest]) -> AirflowBinding:
    bindings = bound_service_accounts(chart, AIRFLOW_WORKER)
    assert len(bindings) == 1, (
        f"expected one RoleBinding for ServiceAccount {AIRFLOW_WORKER}, found {bindings}"
    )
    return bindings[0]


def test_airflow_worker_has_exactly_what_the_chart_grants(
    chart: list[Manifest],
    chart_rbac_applied: None,
    airflow_worker: AirflowBinding,
    as_user: AsUser,
    baseline: set[Permission],
) -> None:
    namespace, binding = airflow_worker
    granted = as_user(service_account_user(namespace, AIRFLOW_WORKER)).permissions() - baseline
    assert granted == _role_permissions(chart, binding)


def test_airflow_worker_launches_pods_only_in_userstream(
    chart_rbac_applied: None, airflow_worker: AirflowBinding, as_user: AsUser
) -> None:
    namespace, _ = airflow_worker
    worker = as_user(service_account_user(namespace, AIRFLOW_WORKER))
    for verb in ("create", "get", "list", "watch", "delete"):
        assert worker.can(verb, "pods"), f"{AIRFLOW_WORKER} cannot {verb} pods in {NAMESPACE}"
    assert worker.can("get", "pods/log"), f"{AIRFLOW_WORKER} cannot read pod logs in {NAMESPACE}"
    for elsewhere in ("kube-system", "default"):
        assert not worker.can("create", "pods", namespace=elsewhere), (
            f"{AIRFLOW_WORKER} can create pods in {elsewhere}"
        )
    assert not worker.can("create", "pods", namespace=None), f"{AIRFLOW_WORKER} can create pods cluster-wide"


def test_airflow_worker_cannot_read_secrets_or_escalate(
    chart: list[Manifest], chart_rbac_applied: None, airflow_worker: AirflowBinding, as_user: AsUser
) -> None:
    namespace, binding = airflow_worker
    worker = as_user(service_account_user(namespace, AIRFLOW_WORKER))
    for verb in ("get", "list", "watch"):
        assert not worker.can(verb, "secrets"), f"{AIRFLOW_WORKER} can {verb} secrets in {NAMESPACE}"
        assert not worker.can(verb, "secrets", namespace="kube-system")
    for resource in ("roles", "rolebindings"):
        assert not worker.can("create", resource, group="rbac.authorization.k8s.io")
    assert not worker.can("create", "serviceaccounts/token"), f"{AIRFLOW_WORKER} can mint tokens"
    if ("", "pods/exec", "create") not in _role_permissions(chart, binding):
        assert not worker.can("create", "pods/exec"), f"{AIRFLOW_WORKER} can exec into pods"


def test_ingest_service_account_can_do_nothing(
    chart_rbac_applied: None, as_user: AsUser, baseline: set[Permission]
) -> None:
    ingest = as_user(service_account_user(NAMESPACE, INGEST))
    assert ingest.permissions() == baseline, f"{INGEST} was granted more than any ServiceAccount gets"
    for verb, resource in (("get", "pods"), ("create", "pods"), ("get", "secrets"), ("get", "configmaps")):
        assert not ingest.can(verb, resource), f"{INGEST} can {verb} {resource}"


def test_service_accounts_the_chart_binds_stay_in_their_namespace(
    chart: list[Manifest], chart_rbac_applied: None, as_user: AsUser
) -> None:
    """No ServiceAccount the chart binds can read Secrets or create pods outside userstream."""
    subjects = {
        (subject.get("namespace") or NAMESPACE, subject["name"])
        for binding in chart
        if binding.kind == "RoleBinding"
        for subject in binding.body.get("subjects") or []
        if subject.get("kind") == "ServiceAccount"
    }
    assert subjects, "the chart binds no ServiceAccount"
    for namespace, name in sorted(subjects):
        account = as_user(service_account_user(namespace, name))
        assert not account.can("create", "pods", namespace="kube-system"), (
            f"{name} can create pods in kube-system"
        )
        assert not account.can("get", "secrets", namespace="kube-system"), (
            f"{name} can read kube-system secrets"
        )
        assert not account.can("list", "nodes", namespace=None), f"{name} can list nodes"
