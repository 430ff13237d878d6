"""k8s/platform/install.sh run against fake helm and kubectl that record their calls.

Nothing here reaches a cluster: the fakes log each argv (and what was piped into ``kubectl apply``)
and print what the script reads back (``helm show crds``, ``kubectl create --dry-run``). The tests
check what the script asks of helm and kubectl, in which order, and against which cluster.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from userstream.versions import parse_versions

REPO = Path(__file__).resolve().parents[3]
INSTALL = REPO / "k8s" / "platform" / "install.sh"
PINS = parse_versions((REPO / "versions.env").read_text(encoding="utf-8"))

FAKE = """#!/usr/bin/env bash
# fake {tool}: record the call; print what install.sh reads back
log="$FAKE_LOG"
printf '%s\\n' "{tool} $*" >>"$log"
case " $* " in
  *" show crds "*) printf 'apiVersion: apiextensions.k8s.io/v1\\nkind: CustomResourceDefinition\\n' ;;
  *" --dry-run=client "*) printf 'apiVersion: v1\\nkind: Namespace\\n' ;;
  *" apply "*"-f -"*)
    n=$(ls "$FAKE_DIR" | wc -l)
    cat >"$FAKE_DIR/stdin-$n.yaml"
    printf '%s\\n' "  stdin -> stdin-$n.yaml" >>"$log" ;;
esac
case " $* " in
  *" upgrade --install "*)
    # keep the values files helm was given (install.sh deletes its temporary ones)
    prev=""
    for arg in "$@"; do
      if [[ "$prev" == "--values" ]]; then
        n=$(ls "$FAKE_DIR" | wc -l)
        cp "$arg" "$FAKE_DIR/values-$n.yaml"
        printf '%s\\n' "  values $arg -> values-$n.yaml" >>"$log"
      fi
      prev="$arg"
    done ;;
esac
exit 0
"""


class Calls:
    def __init__(self, log: Path, folder: Path) -> None:
        self.lines = log.read_text().splitlines()
        self.folder = folder

    def commands(self, tool: str | None = None) -> list[list[str]]:
        out = []
        for line in self.lines:
            if line.startswith("  "):
                continue
            argv = shlex.split(line)
            if tool is None or argv[0] == tool:
                out.append(argv)
        return out

    def index(self, predicate: str) -> int:
        for i, line in enumerate(self.lines):
            if predicate in line:
                return i
        raise AssertionError(f"no call with {predicate!r} in:\n" + "\n".join(self.lines))

    def helm_release(self, name: str) -> list[str]:
        found = [
            argv
            for argv in self.commands("helm")
            if "upgrade" in argv
            and argv[argv.index("upgrade") + 1 : argv.index("upgrade") + 3] == ["--install", name]
        ]
        assert found, f"helm upgrade --install {name} was never called"
        return found[-1]

    def after(self, marker: str, prefix: str) -> list[str]:
        """The stored files recorded by the call containing ``marker`` (its indented lines; a call of
        the other end of a pipe may be logged in between)."""
        start = self.index(marker)
        files = []
        for line in self.lines[start + 1 : start + 8]:
            if not line.startswith("  "):
                if files:
                    break
                continue
            if line.strip().startswith(prefix):
                files.append(line.rsplit("-> ", 1)[1])
        return files


def flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def run_install(tmp_path: Path, *releases: str, **env: str) -> Calls:
    bin_dir, store = tmp_path / "bin", tmp_path / "store"
    bin_dir.mkdir()
    store.mkdir()
    for tool in ("helm", "kubectl"):
        path = bin_dir / tool
        path.write_text(FAKE.format(tool=tool))
        path.chmod(0o755)
    log = tmp_path / "calls.log"
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "HELM": str(bin_dir / "helm"),
        "KUBECTL": str(bin_dir / "kubectl"),
        "FAKE_LOG": str(log),
        "FAKE_DIR": str(store),
        "IMAGE_TAG": "0.1.0-abcdef012345",
        **env,
    }
    result = subprocess.run(
        ["bash", str(INSTALL), *releases], env=environ, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return Calls(log, store)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Calls:
    return run_install(tmp_path_factory.mktemp("install"), KUBE_CONTEXT="kind-review")


def test_every_call_goes_to_kube_context(calls: Calls) -> None:
    """KUBE_CONTEXT is honoured by every helm and kubectl call, not only by the chart's install."""
    helm, kubectl = calls.commands("helm"), calls.commands("kubectl")
    assert helm
    assert kubectl
    for argv in helm:
        assert flag(argv, "--kube-context") == "kind-review", argv
    for argv in kubectl:
        assert flag(argv, "--context") == "kind-review", argv


def test_without_kube_context_the_current_context_is_used(tmp_path: Path) -> None:
    calls = run_install(tmp_path, "strimzi")
    for argv in calls.commands():
        assert "--kube-context" not in argv, argv
        assert "--context" not in argv, argv


def test_airflow_runs_in_its_own_namespace(calls: Calls) -> None:
    airflow = calls.helm_release("airflow")
    assert flag(airflow, "--namespace") == "airflow"
    for name in ("cert-manager", "strimzi", "spark-operator", "k8ssandra-operator", "cnpg"):
        assert flag(calls.helm_release(name), "--namespace") != "airflow"


def test_airflow_namespace_is_configurable(tmp_path: Path) -> None:
    calls = run_install(tmp_path, "airflow", AIRFLOW_NAMESPACE="orchestration")
    assert flag(calls.helm_release("airflow"), "--namespace") == "orchestration"


def test_strimzi_and_cert_manager_come_from_their_oci_charts(calls: Calls) -> None:
    strimzi, cert_manager = calls.helm_release("strimzi"), calls.helm_release("cert-manager")
    assert strimzi[strimzi.index("strimzi") + 1] == "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    assert flag(strimzi, "--version") == PINS["STRIMZI_VERSION"]
    assert "--repo" not in strimzi
    assert (
        cert_manager[cert_manager.index("cert-manager") + 1] == "oci://quay.io/jetstack/charts/cert-manager"
    )
    assert flag(cert_manager, "--version") == f"v{PINS['CERT_MANAGER_VERSION']}"
    assert "--repo" not in cert_manager


def test_strimzi_crds_are_applied_before_the_operator_is_upgraded(calls: Calls) -> None:
    chart = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    show = calls.index(f"show crds {chart} --version {PINS['STRIMZI_VERSION']}")
    # helm show crds | kubectl apply: the two run at once, so either may log first
    apply = calls.index("apply --server-side --force-conflicts")
    upgrade = calls.index("upgrade --install strimzi ")
    assert max(show, apply) < upgrade
    stored = calls.after(calls.lines[apply], "stdin")
    assert yaml.safe_load((calls.folder / stored[0]).read_text())["kind"] == "CustomResourceDefinition"


def test_every_release_waits_with_the_one_deploy_timeout(calls: Calls) -> None:
    for name in ("cert-manager", "strimzi", "spark-operator", "k8ssandra-operator", "cnpg", "airflow"):
        argv = calls.helm_release(name)
        assert "--wait" in argv
        assert flag(argv, "--timeout") == PINS["DEPLOY_TIMEOUT"], name


def test_airflow_gets_the_build_tag_for_its_image_and_the_dags_ingest_image(calls: Calls) -> None:
    airflow = calls.helm_release("airflow")
    sets = [airflow[i + 1] for i, arg in enumerate(airflow) if arg == "--set"]
    assert "images.airflow.tag=0.1.0-abcdef012345" in sets
    assert "defaultAirflowTag=0.1.0-abcdef012345" in sets
    extra = [
        yaml.safe_load((calls.folder / name).read_text())
        for name in calls.after("upgrade --install airflow", "values")
    ]
    env = [yaml.safe_load(v["extraEnv"]) for v in extra if "extraEnv" in v]
    assert env == [
        [
            {"name": "USERSTREAM_DAG_INGEST_IMAGE", "value": "userstream-ingest:0.1.0-abcdef012345"},
            {"name": "USERSTREAM_DAG_NAMESPACE", "value": "userstream"},
        ]
    ]


def test_airflow_task_logs_claim_exists_before_the_release(calls: Calls) -> None:
    apply = next(
        line for line in calls.lines if line.startswith("kubectl") and " apply -n airflow -f -" in line
    )
    claim = yaml.safe_load((calls.folder / calls.after(apply, "stdin")[0]).read_text())
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["name"] == "airflow-logs"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert calls.index(apply) < calls.index("upgrade --install airflow ")


def test_kind_gets_a_read_write_once_log_claim(tmp_path: Path) -> None:
    calls = run_install(tmp_path, "airflow", AIRFLOW_LOGS_ACCESS_MODE="ReadWriteOnce")
    apply = next(line for line in calls.lines if " apply -n airflow -f -" in line)
    claim = yaml.safe_load((calls.folder / calls.after(apply, "stdin")[0]).read_text())
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_a_wrong_log_access_mode_fails_naming_it(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("helm", "kubectl"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "HELM": str(bin_dir / "helm"), "KUBECTL": str(bin_dir / "kubectl")}
    env["AIRFLOW_LOGS_ACCESS_MODE"] = "ReadWriteAll"
    result = subprocess.run(["bash", str(INSTALL)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "AIRFLOW_LOGS_ACCESS_MODE" in result.stderr


def test_finished_airflow_jobs_are_removed_before_an_upgrade(calls: Calls) -> None:
    """With useHelmHooks false the Jobs are release objects with fixed names and immutable pod
    templates: the previous revision's must go before an upgrade changes the image."""
    delete = calls.index("delete job airflow-run-airflow-migrations airflow-create-user")
    assert "-n airflow" in calls.lines[delete]
    assert delete < calls.index("upgrade --install airflow ")
