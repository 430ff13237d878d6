"""Cluster API tier fixtures: one etcd + kube-apiserver for the session (see cluster_api.py).

Skips with a one-line reason when kube-apiserver is not built (`make apiserver`) or etcd is absent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from cluster_api import (
    NAMESPACE,
    KubeApiServer,
    PrerequisiteMissing,
    api_error_message,
    dynamic_client,
    running_kube_apiserver,
)
from cluster_manifests import (
    Manifest,
    Outcome,
    missing_operator_crds,
    operator_crds,
    other_value_profiles,
    profile_namespace,
    render_userstream_chart,
    server_side_apply,
)
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

CRD_ESTABLISHED_TIMEOUT_S = 60.0


# The running servers' exit stacks: closed as soon as the last test of this directory is done, so
# that etcd and kube-apiserver do not idle through the other tiers of the same session.
_RUNNING: list[contextlib.ExitStack] = []


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """etcd + kube-apiserver on loopback for this tier's tests; both stopped after its last test."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_kube_apiserver(tmp_path_factory.mktemp("cluster-api")))
        except PrerequisiteMissing as missing:
            pytest.skip(str(missing))
        _RUNNING.append(stack)
        yield server
        if stack in _RUNNING:
            _RUNNING.remove(stack)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not _RUNNING:
        return
    items = item.session.items
    later = items[items.index(item) + 1 :] if item in items else []
    if not any(other.path.parent == item.path.parent for other in later):
        while _RUNNING:
            _RUNNING.pop().close()


@pytest.fixture(scope="session")
def api_client(kube_apiserver: KubeApiServer) -> Iterator[k8s.ApiClient]:
    """Admin (system:masters) client of the test API server."""
    with kube_apiserver.client() as api_client:
        yield api_client


def create_namespace(api_client: k8s.ApiClient, name: str) -> str:
    """A namespace plus its ``default`` ServiceAccount.

    The ``default`` ServiceAccount is normally created by kube-controller-manager, which this tier
    does not run; the ServiceAccount admission plugin rejects pods whose ServiceAccount is missing.
    """
    core = k8s.CoreV1Api(api_client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    default_account = k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="default"))
    core.create_namespaced_service_account(name, default_account)
    return name


@pytest.fixture(scope="session")
def userstream_namespace(api_client: k8s.ApiClient) -> str:
    """Namespace ``userstream``, where the chart is applied with the kind profile."""
    return create_namespace(api_client, NAMESPACE)


def _established(extensions: k8s.ApiextensionsV1Api, name: str) -> bool:
    crd = extensions.read_custom_resource_definition(name)
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


@pytest.fixture(scope="session")
def established_crds(kube_apiserver: KubeApiServer, api_client: k8s.ApiClient) -> dict[str, Outcome]:
    """Server-side apply every operator CRD of .cache/crds and wait until each is Established.

    The outcome per file of .cache/crds (a file may hold several CRDs).
    """
    dynamic = dynamic_client(api_client, kube_apiserver.work)
    errors: dict[str, list[str]] = {}
    files: dict[str, str] = {}  # CRD name -> its file
    for crd in operator_crds():
        errors.setdefault(crd.source, [])
        try:
            server_side_apply(dynamic, crd)
            files[crd.name] = crd.source
        except ApiException as error:
            errors[crd.source].append(f"{crd.name}: {api_error_message(error)}")
    extensions = k8s.ApiextensionsV1Api(api_client)
    pending = set(files)
    deadline = time.monotonic() + CRD_ESTABLISHED_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        pending = {name for name in pending if not _established(extensions, name)}
        if pending:
            time.sleep(0.5)
    for name in pending:
        errors[files[name]].append(f"{name}: not Established after {CRD_ESTABLISHED_TIMEOUT_S:.0f}s")
    return {source: Outcome(error="; ".join(problems) or None) for source, problems in errors.items()}


@pytest.fixture(scope="session")
def applied_chart(
    kube_apiserver: KubeApiServer,
    api_client: k8s.ApiClient,
    userstream_namespace: str,
    established_crds: dict[str, Outcome],
) -> dict[str, Outcome]:
    """Server-side apply (strict field validation) every object the userstream chart renders, in
    helm's install order, after the CRDs; the outcome of each, by ``Kind/name``."""
    loaded = render_userstream_chart()
    if loaded.problem:
        return {}
    return apply_all(kube_apiserver, api_client, loaded.manifests, userstream_namespace)


@pytest.fixture(scope="session")
def applied_profiles(
    kube_apiserver: KubeApiServer, api_client: k8s.ApiClient, applied_chart: dict[str, Outcome]
) -> dict[str, Outcome]:
    """The chart with each other ci/ value profile, installed in its own namespace
    (``userstream-<profile>``); outcomes by ``<values file>:Kind/name``."""
    outcomes: dict[str, Outcome] = {}
    for values in other_value_profiles():
        namespace = profile_namespace(values)
        loaded = render_userstream_chart(values, namespace)
        if loaded.problem:
            continue
        create_namespace(api_client, namespace)
        applied = apply_all(kube_apiserver, api_client, loaded.manifests, namespace)
        outcomes.update({f"{values.name}:{object_id}": outcome for object_id, outcome in applied.items()})
    return outcomes


def apply_all(
    kube_apiserver: KubeApiServer, api_client: k8s.ApiClient, manifests: list[Manifest], namespace: str
) -> dict[str, Outcome]:
    """Server-side apply each manifest in order; the outcome of each, by ``Kind/name``."""
    dynamic = dynamic_client(api_client, kube_apiserver.work)
    outcomes: dict[str, Outcome] = {}
    for manifest in manifests:
        try:
            server_side_apply(dynamic, manifest, namespace)
            outcomes[manifest.id] = Outcome()
        except ResourceNotFoundError:
            skip = missing_operator_crds(manifest.group)
            outcomes[manifest.id] = Outcome(
                skip=skip,
                error=None
                if skip
                else f"{manifest.api_version} {manifest.kind} is served neither by kube-apiserver "
                f"v{kube_apiserver.version} nor by any CRD of .cache/crds",
            )
        except ApiException as error:
            outcomes[manifest.id] = Outcome(error=api_error_message(error))
    return outcomes
