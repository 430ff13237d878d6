"""What the cluster API tier applies: the operators' CRDs and the userstream chart rendered by helm.

Rendering happens at collection time so that every object gets its own test id; when helm, the
chart or the CRDs are missing the loaders say why instead of raising.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cluster_api import NAMESPACE, REPO_ROOT, kubernetes_version
from kubernetes.dynamic import DynamicClient

HELM = REPO_ROOT / ".cache" / "bin" / "helm"
CHART = REPO_ROOT / "charts" / "userstream"
CI_VALUES = CHART / "ci" / "kind-values.yaml"
CRD_DIR = REPO_ROOT / ".cache" / "crds"
RELEASE = "userstream"
FIELD_MANAGER = "userstream-cluster-api-tier"

# API groups of the operators' custom resources -> the folder of .cache/crds holding their CRDs
OPERATOR_GROUPS = {
    "kafka.strimzi.io": "strimzi",
    "k8ssandra.io": "k8ssandra-operator",
    "cassandra.datastax.com": "k8ssandra-operator",
    "postgresql.cnpg.io": "cloudnative-pg",
    "sparkoperator.k8s.io": "spark-operator",
}

# The order helm installs kinds in (kinds not listed come last), so that what an object needs at
# admission (its namespace, its ServiceAccount) exists before it.
INSTALL_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
]


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object."""

    body: dict[str, Any] = field(hash=False, compare=False)
    source: str

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def install_rank(self) -> int:
        return INSTALL_ORDER.index(self.kind) if self.kind in INSTALL_ORDER else len(INSTALL_ORDER)


@dataclass(frozen=True)
class Outcome:
    """What the API server said about one object: accepted, rejected (error) or not tried (skip)."""

    error: str | None = None
    skip: str | None = None


@dataclass(frozen=True)
class Loaded:
    manifests: list[Manifest]
    problem: str | None = None  # why nothing could be loaded (a skip or failure reason)
    fatal: bool = False  # the problem is a failure of ours, not a missing prerequisite


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(text: str, source: str) -> list[Manifest]:
    return [
        Manifest(body=doc, source=source)
        for doc in yaml.load_all(text, Loader=_Loader)
        if isinstance(doc, dict) and doc.get("kind")
    ]


def other_value_profiles() -> list[Path]:
    """The chart's ci/ value files besides the kind profile (e.g. the cloud profile)."""
    if not CI_VALUES.parent.is_dir():
        return []
    return sorted(p for p in CI_VALUES.parent.glob("*.yaml") if p != CI_VALUES)


def profile_namespace(values: Path) -> str:
    """Where a value profile other than kind's is installed: ``userstream-<profile>``."""
    return f"{NAMESPACE}-{values.stem.removesuffix('-values')}"


def render_userstream_chart(values: Path = CI_VALUES, namespace: str = NAMESPACE) -> Loaded:
    """`helm template` of charts/userstream with a ci/ values file, in install order."""
    if not HELM.is_file():
        return Loaded([], f"helm not installed ({HELM.relative_to(REPO_ROOT)}): `make tools` installs it")
    if not (CHART / "Chart.yaml").is_file():
        return Loaded([], f"chart {CHART.relative_to(REPO_ROOT)} does not exist yet")
    argv = [
        str(HELM),
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        f"v{kubernetes_version()}",
    ]
    if values.is_file():
        argv += ["--values", str(values)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return Loaded([], f"`{' '.join(argv)}` failed:\n{result.stderr.strip()}", fatal=True)
    manifests = _documents(result.stdout, "helm template")
    if not manifests:
        return Loaded([], f"`{' '.join(argv)}` rendered no object", fatal=True)
    return Loaded(sorted(manifests, key=lambda m: m.install_rank))


def operator_crd_files() -> list[str]:
    """The YAML files under .cache/crds (written by `make crds`), relative to it; cheap to list."""
    if not CRD_DIR.is_dir():
        return []
    return sorted(str(p.relative_to(CRD_DIR)) for p in CRD_DIR.rglob("*") if p.suffix in {".yaml", ".yml"})


def operator_crds() -> list[Manifest]:
    """Every CustomResourceDefinition of those files (``source`` is the file)."""
    return [
        manifest
        for name in operator_crd_files()
        for manifest in _documents((CRD_DIR / name).read_text(), name)
        if manifest.kind == "CustomResourceDefinition"
    ]


def missing_operator_crds(group: str) -> str | None:
    """Why objects of ``group`` cannot be checked, when the CRDs of its operator were not fetched."""
    operator = next((op for g, op in OPERATOR_GROUPS.items() if group == g or group.endswith("." + g)), None)
    if operator and not (CRD_DIR / operator).is_dir():
        return f"{operator} CRDs not in {CRD_DIR.relative_to(REPO_ROOT)}: `make crds` did not fetch them"
    return None


CRDS_ABSENT = f"no operator CRDs in {CRD_DIR.relative_to(REPO_ROOT)}: `make crds` fetches them"


def bound_service_accounts(manifests: list[Manifest], name: str) -> list[tuple[str, Manifest]]:
    """(namespace of the ServiceAccount, RoleBinding) of each RoleBinding naming ServiceAccount ``name``."""
    found = []
    for binding in (m for m in manifests if m.kind == "RoleBinding"):
        for subject in binding.body.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("name") == name:
                found.append((subject.get("namespace") or NAMESPACE, binding))
    return found


def service_account_user(namespace: str, name: str) -> str:
    """The user name a ServiceAccount authenticates as."""
    return f"system:serviceaccount:{namespace}:{name}"


def server_side_apply(
    dynamic: DynamicClient, manifest: Manifest, namespace: str = NAMESPACE, dry_run: bool = False
) -> None:
    """Server-side apply ``manifest`` with strict field validation, in its own namespace or else
    ``namespace`` (``dry_run``: validate, store nothing)."""
    resource = dynamic.resources.get(api_version=manifest.api_version, kind=manifest.kind)
    if resource.namespaced:
        namespace = manifest.body.get("metadata", {}).get("namespace") or namespace
    else:
        namespace = None
    dynamic.server_side_apply(
        resource,
        body=manifest.body,
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        # reject unknown or duplicate fields instead of silently dropping them
        query_params=[("fieldValidation", "Strict")],
        dry_run="All" if dry_run else None,
    )
