"""images/spark/entrypoint.sh: the `driver` / `executor` commands Spark's Kubernetes backend gives
the pods, run against stand-ins for spark-submit and java that print their arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[3] / "images" / "spark" / "entrypoint.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _stub(path: Path) -> None:
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n', encoding="utf-8")
    path.chmod(0o755)


def _run(tmp_path: Path, args: list[str], env: dict[str, str]) -> list[str]:
    spark_home = tmp_path / "spark"
    (spark_home / "bin").mkdir(parents=True, exist_ok=True)
    _stub(spark_home / "bin" / "spark-submit")
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    _stub(tools / "java")
    base = {"PATH": f"{tools}:/usr/bin:/bin", "SPARK_HOME": str(spark_home)}
    result = subprocess.run(
        [str(ENTRYPOINT), *args], env={**base, **env}, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_entrypoint_is_executable() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)


def test_driver_runs_spark_submit_in_client_mode_bound_to_the_pod(tmp_path: Path) -> None:
    out = _run(
        tmp_path,
        ["driver", "--properties-file", "/opt/spark/conf/spark.properties", "--class", "X", "app.py"],
        {"SPARK_DRIVER_BIND_ADDRESS": "10.244.1.7"},
    )
    assert out[0] == "spark-submit"
    assert out[1:7] == [
        "--deploy-mode",
        "client",
        "--conf",
        "spark.driver.bindAddress=10.244.1.7",
        "--conf",
        "spark.executorEnv.SPARK_DRIVER_POD_IP=10.244.1.7",
    ]
    assert out[7:] == ["--properties-file", "/opt/spark/conf/spark.properties", "--class", "X", "app.py"]


def test_executor_runs_the_kubernetes_executor_backend_with_the_pods_settings(tmp_path: Path) -> None:
    env = {
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver-svc:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_EXECUTOR_MEMORY": "1024m",
        "SPARK_APPLICATION_ID": "spark-abc",
        "SPARK_EXECUTOR_POD_IP": "10.244.2.9",
        "SPARK_EXECUTOR_POD_NAME": "stream-exec-3",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_JAVA_OPT_10": "-Dlast=1",
        "SPARK_JAVA_OPT_0": "-Dspark.driver.port=7078",
        "SPARK_JAVA_OPT_1": "-Dwith.space=a b",
        "SPARK_CLASSPATH": "/extra/*",
    }
    out = _run(tmp_path, ["executor"], env)
    assert out[0] == "java"
    assert out[1:4] == ["-Dspark.driver.port=7078", "-Dwith.space=a b", "-Dlast=1"]
    assert out[4:6] == ["-Xms1024m", "-Xmx1024m"]
    assert out[6:8] == ["-cp", f"/extra/*:{tmp_path}/spark/jars/*"]
    assert out[8] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    options = dict(zip(out[9::2], out[10::2], strict=True))
    assert options == {
        "--driver-url": "spark://CoarseGrainedScheduler@driver-svc:7078",
        "--executor-id": "3",
        "--cores": "1",
        "--app-id": "spark-abc",
        "--hostname": "10.244.2.9",
        "--resourceProfileId": "0",
        "--podName": "stream-exec-3",
    }


def test_anything_else_is_run_as_given(tmp_path: Path) -> None:
    assert _run(tmp_path, ["echo", "hello"], {}) == ["hello"]


def test_executor_without_its_settings_fails(tmp_path: Path) -> None:
    spark_home = tmp_path / "spark"
    spark_home.mkdir()
    result = subprocess.run(
        [str(ENTRYPOINT), "executor"],
        env={"PATH": "/usr/bin:/bin", "SPARK_HOME": str(spark_home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "SPARK_DRIVER_URL" in result.stderr
