"""Reading the state of the ``userstream-stream`` SparkApplication (Kubeflow Spark operator)."""

from __future__ import annotations

from typing import Any

SPARK_GROUP = "sparkoperator.k8s.io"
SPARK_VERSION = "v1beta2"
SPARK_PLURAL = "sparkapplications"

# The application states of spark-operator v2.5.2 (api/v1beta2/sparkapplication_types.go). FAILING,
# INVALIDATING, PENDING_RERUN, SUCCEEDING, SUBMITTED, ... are transitions: with restartPolicy Always
# the operator resubmits after FAILING (pkg/util/sparkapplication.go ShouldRetry). Only these two
# are final: the operator gave up (FAILED after its retries, SUBMISSION_FAILED when it cannot retry).
FINAL_FAILURES = frozenset({"FAILED", "SUBMISSION_FAILED"})


def state_of(app: dict[str, Any]) -> str:
    """``.status.applicationState.state`` of a SparkApplication ("" before the operator's first status)."""
    return str(((app.get("status") or {}).get("applicationState") or {}).get("state") or "")


def wait_verdict(app: dict[str, Any]) -> bool | None:
    """For a caller waiting for the stream to run: True when RUNNING, False when it failed for good
    (stop waiting, report the operator's message), None when it may still get there (keep waiting)."""
    state = state_of(app)
    if state == "RUNNING":
        return True
    if state in FINAL_FAILURES:
        return False
    return None


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
