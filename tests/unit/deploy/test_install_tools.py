"""k8s/tools/install_tools.py: helm and kubectl on machines other than linux/amd64, the K8ssandra CRD
fallback, and what the hosted CI installs (nothing is downloaded here: fakes stand in)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from userstream.versions import parse_versions

REPO = Path(__file__).resolve().parents[3]
PINS = parse_versions((REPO / "versions.env").read_text(encoding="utf-8"))
sys.path.insert(0, str(REPO / "k8s" / "tools"))

import install_tools  # noqa: E402


def _fake(folder: Path, name: str, output: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "cache" / "bin"
    monkeypatch.setattr(install_tools, "BIN", bin_dir)
    monkeypatch.setattr(install_tools, "CACHE", tmp_path / "cache")
    return bin_dir


def test_the_layer_binaries_are_used_on_linux_amd64_only(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    monkeypatch.setattr(install_tools, "install_bin_from_layer", lambda v: used.append("layer") or 0)
    monkeypatch.setattr(install_tools, "install_bin_elsewhere", lambda v, m: used.append("/".join(m)) or 0)
    for machine in (("linux", "x86_64"), ("darwin", "aarch64"), ("linux", "aarch64"), ("darwin", "x86_64")):
        assert install_tools.install_bin(PINS, machine) == 0
    assert used == ["layer", "darwin/aarch64", "linux/aarch64", "darwin/x86_64"]


def test_elsewhere_helm_and_kubectl_of_the_path_are_linked(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    major = PINS["HELM_VERSION"].split(".")[0]
    path = tmp_path / "path"
    _fake(path, "helm", f"v{major}.0.9+gabc")
    _fake(path, "kubectl", "Client Version: v1.35.0")
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ['PATH']}")
    assert install_tools.install_bin(PINS, ("darwin", "aarch64")) == 0
    assert (cache / "helm").resolve() == (path / "helm").resolve()
    assert (cache / "kubectl").resolve() == (path / "kubectl").resolve()


def test_elsewhere_a_helm_of_another_major_is_refused_without_go(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "path"
    _fake(path, "helm", "v3.19.0+g1234")
    _fake(path, "kubectl", "Client Version: v1.35.0")
    monkeypatch.setenv("PATH", str(path))  # no go on this PATH
    assert install_tools.install_bin(PINS, ("darwin", "aarch64")) == 1
    out = capsys.readouterr().out
    assert "darwin/aarch64" in out
    assert "Helm 3" in out
    assert PINS["HELM_VERSION"] in out
    assert not (cache / "helm").exists()


def test_elsewhere_helm_is_built_from_its_go_module_at_the_pinned_version(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "path"
    _fake(path, "kubectl", "Client Version: v1.35.0")
    _fake(path, "go", "go")
    monkeypatch.setenv("PATH", str(path))
    calls: list[tuple[list[str], dict[str, str]]] = []

    class Done:
        returncode = 0

    def run(argv: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        calls.append((argv, env or {}))
        return Done()

    monkeypatch.setattr(install_tools.subprocess, "run", run)
    assert install_tools.install_bin(PINS, ("linux", "aarch64")) == 0
    major = PINS["HELM_VERSION"].split(".")[0]
    (argv, env) = next(c for c in calls if c[0][1:2] == ["install"])
    assert argv[2] == f"helm.sh/helm/v{major}/cmd/helm@v{PINS['HELM_VERSION']}"
    assert env["GOBIN"] == str(cache)


def test_k8ssandra_fallback_is_the_closest_release_and_its_hash_is_pinned() -> None:
    pinned = PINS["K8SSANDRA_OPERATOR_VERSION"].split(".")
    fallback = PINS["K8SSANDRA_OPERATOR_CRD_FALLBACK_VERSION"].split(".")
    assert fallback[:2] == pinned[:2], "the fallback is of the pinned minor release"
    assert int(fallback[2]) <= int(pinned[2])
    assert PINS["K8SSANDRA_OPERATOR_CRD_FALLBACK_SUM"].startswith("h1:")


def test_a_fallback_whose_hash_differs_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Out:
        stdout = '{"Dir": "/x", "Sum": "h1:other="}'
        stderr = ""

    seen: dict[str, str] = {}

    def run(argv: list[str], env: dict[str, str], **kwargs: Any) -> Out:
        seen.update(env)
        return Out()

    monkeypatch.setattr(install_tools.shutil, "which", lambda name: "/usr/bin/go")
    monkeypatch.setattr(install_tools.subprocess, "run", run)
    moddir, error = install_tools.go_module_dir("example.com/m", "1.0.0", "h1:pinned=")
    assert moddir is None
    assert "h1:pinned=" in error
    assert seen["GONOSUMDB"] == "example.com/m"


# --- the hosted CI ------------------------------------------------------------------------------


def _workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / ".github" / "workflows" / name).read_text(encoding="utf-8"))


def test_hosted_ci_has_the_java_strimzi_crd_generation_needs_and_fails_without_crds() -> None:
    """Strimzi's crd-generator needs Java >= 21; without it the CRD checks used to skip silently."""
    job = _workflow("ci.yaml")["jobs"]["ci"]
    java = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-java"))
    versions = {int(v) for v in str(java["with"]["java-version"]).split()}
    assert 21 in versions
    env = {**_workflow("ci.yaml").get("env", {}), **job.get("env", {})}
    assert env["USERSTREAM_REQUIRE_CRDS"] == "1"
    run = next(s for s in job["steps"] if s.get("name") == ".ci/run")["run"]
    assert 'STRIMZI_JAVA="$JAVA_HOME_21_X64/bin/java"' in run


def test_e2e_ci_uses_the_helm_make_deploy_uses() -> None:
    steps = _workflow("e2e.yaml")["jobs"]["e2e"]["steps"]
    helm = next(s for s in steps if str(s.get("uses", "")).startswith("azure/setup-helm"))
    assert helm["with"]["version"] == "v${{ env.HELM_VERSION }}"
    pins = next(s for s in steps if s.get("name") == "Versions from versions.env")
    assert "HELM_VERSION" in pins["run"]
