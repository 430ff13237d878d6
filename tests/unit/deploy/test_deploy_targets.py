"""The Makefile's Kubernetes targets (read with `make -n`, nothing runs), the image tag by content and
the tool version check they use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from userstream.versions import parse_versions

REPO = Path(__file__).resolve().parents[3]
PINS = parse_versions((REPO / "versions.env").read_text(encoding="utf-8"))
sys.path.insert(0, str(REPO / "k8s" / "tools"))

from check_version import check  # noqa: E402
from image_tag import image_tag, input_files  # noqa: E402

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def make_n(*args: str) -> list[str]:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _first(lines: list[str], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in:\n" + "\n".join(lines))


@needs_make
def test_dev_builds_and_loads_the_airflow_image_before_installing_airflow() -> None:
    lines = make_n("dev", "IMAGE_TAG=t1")
    build = _first(lines, "USERSTREAM_IMAGE_TAG=t1 .venv/bin/python -m userstream.cluster.images")
    load = _first(lines, "kind load docker-image userstream-$image:t1")
    platform = _first(lines, "k8s/platform/install.sh")
    assert build < load < platform
    assert "IMAGE_TAG=t1" in lines[platform]


@needs_make
def test_dev_checks_the_skaffold_version_before_running_it_with_helm_4() -> None:
    lines = make_n("dev", "IMAGE_TAG=t1")
    check_line = _first(lines, "check_version.py skaffold")
    assert PINS["SKAFFOLD_MIN_VERSION"] in lines[check_line]
    assert check_line < _first(lines, "skaffold dev -p kind")


@needs_make
def test_deploy_wires_one_content_tag_to_the_chart_and_the_airflow_release() -> None:
    lines = make_n("deploy")
    tag = image_tag()
    assert f"IMAGE_TAG={tag}" in lines[_first(lines, "k8s/platform/install.sh")]
    chart = " ".join(lines[_first(lines, "upgrade --install userstream") :])
    assert f"--set image.ingest.tag={tag}" in chart
    assert f"--set image.spark.tag={tag}" in chart
    assert f"--timeout {PINS['DEPLOY_TIMEOUT']}" in chart
    assert f"USERSTREAM_IMAGE_TAG={tag} .venv/bin/python -m userstream.cluster.images" in "\n".join(lines)


@needs_make
def test_platform_and_deploy_use_the_kind_context_and_the_one_timeout() -> None:
    lines = make_n("platform", "KIND_CLUSTER=demo")
    install = lines[_first(lines, "k8s/platform/install.sh")]
    assert "KUBE_CONTEXT=kind-demo" in install
    assert f"TIMEOUT={PINS['DEPLOY_TIMEOUT']}" in install
    assert "AIRFLOW_LOGS_ACCESS_MODE=ReadWriteOnce" in install, "kind's local-path has no ReadWriteMany"


@needs_make
def test_airflow_ui_is_a_port_forward_into_the_airflow_namespace() -> None:
    lines = make_n("airflow-ui", "AIRFLOW_UI_PORT=18080")
    forward = lines[_first(lines, "port-forward")]
    assert "--context kind-userstream -n airflow port-forward svc/airflow-api-server 18080:8080" in forward


@needs_make
def test_undeploy_removes_airflow_from_its_own_namespace() -> None:
    lines = make_n("undeploy")
    airflow = lines[_first(lines, "uninstall airflow")]
    assert "--namespace airflow" in airflow


# --- image tag ------------------------------------------------------------------------------------


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "images" / "ingest").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.3"\n')
    (root / "versions.env").write_text("A=1\n")
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "images" / "ingest" / "Dockerfile").write_text("FROM scratch\n")
    (root / "docs.md").write_text("not an input\n")
    return root


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_image_tag_follows_the_content_of_the_image_inputs(tmp_path: Path) -> None:
    root = _project(tmp_path)
    _git(root, "init", "-q")
    (root / ".gitignore").write_text("*.log\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "one")
    first = image_tag(root)
    assert first.startswith("1.2.3-")
    assert len(first) == len("1.2.3-") + 12
    assert image_tag(root) == first, "same content, same tag"

    (root / "docs.md").write_text("edited\n")
    (root / "src" / "pkg" / "debug.log").write_text("ignored\n")
    (root / "src" / "pkg" / "__pycache__").mkdir()
    (root / "src" / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    assert image_tag(root) == first, "files the images are not built from do not change the tag"

    (root / "src" / "pkg" / "mod.py").write_text("x = 2\n")
    second = image_tag(root)
    assert second != first, "an uncommitted edit gives a new tag"
    (root / "src" / "pkg" / "new.py").write_text("y = 1\n")
    assert image_tag(root) not in {first, second}, "an untracked new file counts"
    (root / "src" / "pkg" / "new.py").unlink()
    assert image_tag(root) == second


def test_image_tag_without_git_hashes_every_input(tmp_path: Path) -> None:
    root = _project(tmp_path)
    files = input_files(root)
    assert files == ["images/ingest/Dockerfile", "pyproject.toml", "src/pkg/mod.py", "versions.env"]
    before = image_tag(root)
    (root / "images" / "ingest" / "Dockerfile").write_text("FROM busybox\n")
    assert image_tag(root) != before


def test_the_repository_tag_is_the_project_version_plus_a_digest() -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    tag = image_tag()
    assert tag.startswith(f"{version}-")
    assert "images/airflow/Dockerfile" in input_files()


# --- tool versions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("v2.19.0", True),
        ("v2.24.0\n", True),
        ("v2.18.0", False),
        ("v2.17.1", False),
        ("v1.39.2", False),
    ],
)
def test_skaffold_version_check(text: str, ok: bool) -> None:
    error = check("skaffold", text, PINS["SKAFFOLD_MIN_VERSION"])
    assert (error is None) is ok
    if not ok:
        assert error is not None
        assert "skaffold" in error
        assert PINS["SKAFFOLD_MIN_VERSION"] in error


def test_unreadable_version_fails_naming_the_tool() -> None:
    error = check("skaffold", "garbage", "2.19.0")
    assert error is not None
    assert "skaffold" in error


# --- kind and skaffold ----------------------------------------------------------------------------


def _yaml_file(path: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / path).read_text(encoding="utf-8"))


def test_kind_binds_no_host_port() -> None:
    """The old mapping pointed host 8080 at a NodePort no Service had, and made cluster creation fail
    while 8080 was busy; the UI is `make airflow-ui` instead."""
    for node in _yaml_file("k8s/kind-config.yaml")["nodes"]:
        assert "extraPortMappings" not in node, node["role"]


def test_skaffold_releases_wait_with_the_one_deploy_timeout() -> None:
    flags = _yaml_file("skaffold.yaml")["deploy"]["helm"]["flags"]
    for action in ("install", "upgrade"):
        args = flags[action]
        assert args[args.index("--timeout") + 1] == PINS["DEPLOY_TIMEOUT"], action


def test_skaffold_puts_airflow_in_its_own_namespace() -> None:
    releases = {r["name"]: r for r in _yaml_file("skaffold.yaml")["deploy"]["helm"]["releases"]}
    assert releases["airflow"]["namespace"] == "airflow"
    assert releases["userstream"]["namespace"] == "userstream"
    assert releases["userstream"]["setValues"]["airflow.namespace"] == "airflow"


def test_skaffold_syncs_no_dag_files_into_running_pods() -> None:
    """KubernetesExecutor tasks run the image's copy of the DAGs; a synced file would not be run."""
    config = _yaml_file("skaffold.yaml")
    for artifact in config["build"]["artifacts"]:
        assert "sync" not in artifact, artifact["image"]
    for profile in config.get("profiles", []):
        for patch in profile.get("patches", []):
            assert "/sync" not in patch["path"], profile["name"]


def test_status_counts_rows_as_the_read_only_role() -> None:
    script = (REPO / "k8s" / "status.sh").read_text(encoding="utf-8")
    assert '"$RELEASE-cassandra-reader"' in script
    assert "superuser" not in script
