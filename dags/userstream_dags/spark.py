"""Reading the state of the ``userstream-stream`` SparkApplication (Kubeflow Spark operator)."""

from __future__ import annotations

from typing import Any

SPARK_GROUP = "sparkoperator.k8s.io"
SPARK_VERSION = "v1beta2"
SPARK_PLURAL = "sparkapplications"


def describe_state(app: dict[str, Any]) -> tuple[bool, str]:
    """Return (is RUNNING, one-line description) of a SparkApplication object."""
    meta = app.get("metadata", {})
    ref = f"SparkApplication {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    status = app.get("status") or {}
    state = (status.get("applicationState") or {}).get("state") or "UNKNOWN (no status yet)"
    if state == "RUNNING":
        executors = status.get("executorState") or {}
        running = sum(1 for s in executors.values() if s == "RUNNING")
        return True, f"{ref} is RUNNING with {running} running executor(s)"
    error = (status.get("applicationState") or {}).get("errorMessage") or "no error message"
    return False, (
        f"{ref} is {state}, not RUNNING: {error}. "
        "Inspect it with kubectl describe sparkapplication and the driver pod's log."
    )
