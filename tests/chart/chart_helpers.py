"""Helpers of the chart tier: render charts/userstream with the real helm binary, validate the result.

Everything here runs offline: ``helm template`` of our own chart, Kubernetes schemas shipped inside
kubernetes-validate, and the operators' CRDs that ``make crds`` stored in ``.cache/crds``.
``render_chart(values=..., show_only=[...])`` is the one entry point the tests use.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "userstream"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CRD_DIR = ROOT / ".cache" / "crds"
PLATFORM = ROOT / "k8s" / "platform"
RELEASE = "userstream"
NAMESPACE = "userstream"


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (ROOT / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


VERSIONS = read_versions()


def helm_bin() -> Path | None:
    candidate = Path(os.environ.get("HELM_BIN", ROOT / ".cache" / "bin" / "helm"))
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


class HelmError(RuntimeError):
    """helm exited non-zero; the message is its stderr."""


def run_helm(*args: str) -> str:
    helm = helm_bin()
    if helm is None:
        pytest.skip("no helm binary at .cache/bin/helm or $HELM_BIN: run `make tools`")
    env = {**os.environ, "HELM_CACHE_HOME": str(ROOT / ".cache" / "helm" / "cache")}
    env["HELM_CONFIG_HOME"] = str(ROOT / ".cache" / "helm" / "config")
    env["HELM_DATA_HOME"] = str(ROOT / ".cache" / "helm" / "data")
    out = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise HelmError(out.stderr.strip() or out.stdout.strip())
    return out.stdout


@functools.lru_cache(maxsize=64)
def _render(
    values_yaml: str, values_files: tuple[str, ...], show_only: tuple[str, ...], skip_schema: bool = False
) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(values_yaml)
        path = handle.name
    try:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        args += ["--kube-version", VERSIONS["KUBERNETES_VERSION"]]
        if skip_schema:  # what templates/check-values.yaml says on its own
            args += ["--skip-schema-validation"]
        for f in values_files:
            args += ["--values", f]
        args += ["--values", path]
        for s in show_only:
            args += ["--show-only", s]
        return run_helm(*args)
    finally:
        os.unlink(path)


def render_chart(
    values: dict[str, Any] | None = None,
    show_only: Iterable[str] = (),
    values_files: Iterable[Path | str] = (),
    skip_schema: bool = False,
) -> list[dict[str, Any]]:
    """Render the chart with ``helm template`` and return its documents (parsed, without empties)."""
    show_only = tuple(show_only)
    for template in show_only:
        assert (CHART / template).is_file(), f"no template {template} in {CHART}"
    try:
        text = _render(
            yaml.safe_dump(values or {}), tuple(str(f) for f in values_files), show_only, skip_schema
        )
    except HelmError as exc:
        # helm refuses --show-only of a template that rendered nothing (a feature switched off)
        if "could not find template" in str(exc):
            return []
        raise
    return [copy.deepcopy(doc) for doc in yaml.safe_load_all(text) if doc]


def render_error(
    values: dict[str, Any], values_files: Iterable[Path | str] = (), skip_schema: bool = False
) -> str:
    """Render values that must be refused; return helm's error message (``skip_schema``: the message
    of templates/check-values.yaml, with values.schema.json not applied)."""
    try:
        render_chart(values, values_files=values_files, skip_schema=skip_schema)
    except HelmError as exc:
        return str(exc)
    raise AssertionError(f"helm rendered values it should refuse: {values}")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def jpath(doc: Any, path: str) -> Any:
    """A dotted path lookup ('spec.driver.env'); list indices as numbers ('spec.volumes.0.name')."""
    current = doc
    for part in path.split("."):
        if isinstance(current, list):
            current = current[int(part)]
        elif isinstance(current, dict):
            current = current.get(part)
        else:
            return None
        if current is None:
            return None
    return current


def pod_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod a core workload renders."""
    if doc["kind"] in {"Job", "Deployment", "StatefulSet", "DaemonSet"}:
        return [(f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])]
    if doc["kind"] == "CronJob":
        return [
            (f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        ]
    if doc["kind"] == "Pod":
        return [(f"Pod/{doc['metadata']['name']}", doc["spec"])]
    return []


# --- CRD schemas ---------------------------------------------------------------------------------

CRD_SOURCES = {
    "kafka.strimzi.io": "strimzi",
    "k8ssandra.io": "k8ssandra-operator",
    "postgresql.cnpg.io": "cloudnative-pg",
    "sparkoperator.k8s.io": "spark-operator",
}


def _strict(schema: Any) -> Any:
    """The API server prunes (and with strict field validation rejects) fields a structural schema
    does not declare: say so to jsonschema, and let nullable fields be null."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=1)
def crd_schemas() -> dict[tuple[str, str], dict[str, Any] | str]:
    """(apiVersion, kind) -> openAPIV3Schema, or the reason its CRDs are unavailable."""
    schemas: dict[tuple[str, str], dict[str, Any] | str] = {}
    for group, source in CRD_SOURCES.items():
        folder = CRD_DIR / source
        if (folder / "UNAVAILABLE").exists():
            schemas[(group, "*")] = (
                f"{source} CRDs unavailable: {(folder / 'UNAVAILABLE').read_text().strip()}"
            )
            continue
        if not folder.is_dir():
            schemas[(group, "*")] = f"{source} CRDs not in {folder}: run `make crds`"
            continue
        for f in sorted(folder.glob("*.yaml")):
            for crd in yaml.safe_load_all(f.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    api_version = f"{spec['group']}/{version['name']}"
                    schemas[(api_version, spec["names"]["kind"])] = _strict(
                        version["schema"]["openAPIV3Schema"]
                    )
    return schemas


def crd_schema_for(doc: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema of a custom resource; skip with the reason when its CRDs are unavailable, or
    fail when USERSTREAM_REQUIRE_CRDS=1 (the hosted CI: a missing CRD must not pass silently)."""
    schemas = crd_schemas()
    group = doc["apiVersion"].split("/")[0]
    if (group, "*") in schemas:
        if os.environ.get("USERSTREAM_REQUIRE_CRDS") == "1":
            pytest.fail(f"USERSTREAM_REQUIRE_CRDS=1: {schemas[(group, '*')]}")
        pytest.skip(str(schemas[(group, "*")]))
    schema = schemas.get((doc["apiVersion"], doc["kind"]))
    assert isinstance(schema, dict), (
        f"{doc['kind']} {doc['apiVersion']} is served by no CRD in {CRD_DIR}: wrong apiVersion or kind"
    )
    return schema
