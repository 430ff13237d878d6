"""The cluster itself works: a pod of our image runs and its log is read through the API; a Service
answers by DNS name from a pod on another node; a claim of the default StorageClass is bound.

Runs on either provider (kind with Docker, or the project's own cluster on this machine)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kind_support import E2EError, wait_for

pytestmark = pytest.mark.e2e

SERVE_FILES = "import http.server as h; h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
RESTRICTED = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.fixture(scope="module")
def namespace(e2e_cluster: Any) -> Iterator[str]:
    name = f"e2e-basics-{uuid.uuid4().hex[:6]}"
    e2e_cluster.kubectl("create", "namespace", name)
    e2e_cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    wait_for(
        f"the default ServiceAccount of {name}",
        lambda: e2e_cluster.kubectl("get", "serviceaccount", "default", "-n", name) or None,
        60,
        1,
    )
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def ingest_image(e2e_cluster: Any) -> str:
    return str(e2e_cluster.load_images(["ingest"])[0])


def worker_nodes(cluster: Any) -> list[str]:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    schedulable = [
        n["metadata"]["name"]
        for n in nodes
        if not any(t.get("effect") == "NoSchedule" for t in n["spec"].get("taints", []))
        and not n["spec"].get("unschedulable")
    ]
    return sorted(schedulable)


def apply(cluster: Any, obj: dict[str, Any]) -> None:
    cluster.kubectl_stdin(json.dumps(obj), "apply", "-f", "-")


def pod(name: str, namespace: str, image: str, node: str, command: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "restartPolicy": "Never",
            "securityContext": RESTRICTED,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "securityContext": CONTAINER_SECURITY,
                    **extra,
                }
            ],
        },
    }


def phase(cluster: Any, namespace: str, name: str) -> str:
    return str(cluster.kubectl_json("get", "pod", "-n", namespace, name).get("status", {}).get("phase", ""))


def wait_phase(cluster: Any, namespace: str, name: str, wanted: set[str], timeout_s: float = 180) -> str:
    def reached() -> str | None:
        current = phase(cluster, namespace, name)
        if current == "Failed" and "Failed" not in wanted:
            raise E2EError(
                f"pod {name} failed: {cluster.kubectl('logs', '-n', namespace, name, '--tail=30')}"
            )
        return current if current in wanted else None

    return wait_for(f"pod {namespace}/{name} to be {'/'.join(sorted(wanted))}", reached, timeout_s, 1)


def test_two_schedulable_worker_nodes_are_ready(e2e_cluster: Any) -> None:
    nodes = e2e_cluster.kubectl_json("get", "nodes")["items"]
    workers = worker_nodes(e2e_cluster)
    assert len(workers) >= 2, f"schedulable nodes: {workers}"
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", f"{node['metadata']['name']}: {ready.get('message')}"


def test_a_pod_of_our_image_runs_and_its_log_reaches_the_api(
    e2e_cluster: Any, namespace: str, ingest_image: str
) -> None:
    node = worker_nodes(e2e_cluster)[0]
    apply(e2e_cluster, pod("help", namespace, ingest_image, node, ["userstream", "--help"]))
    assert wait_phase(e2e_cluster, namespace, "help", {"Succeeded"}) == "Succeeded"
    log = e2e_cluster.kubectl("logs", "-n", namespace, "help")
    assert "usage: userstream" in log
    assert "ingest" in log


def test_a_service_answers_by_dns_name_from_a_pod_on_the_other_node(
    e2e_cluster: Any, namespace: str, ingest_image: str
) -> None:
    server_node, client_node = worker_nodes(e2e_cluster)[:2]
    server = pod(
        "web", namespace, ingest_image, server_node,
        ["python", "-c", SERVE_FILES],
        ports=[{"containerPort": 8080}],
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        workingDir="/opt/userstream",
    )  # fmt: skip
    server["spec"]["restartPolicy"] = "Always"
    apply(e2e_cluster, server)
    apply(
        e2e_cluster,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    e2e_cluster.kubectl(
        "wait", "-n", namespace, "pod/web", "--for=condition=Ready", "--timeout=180s", timeout=240
    )
    url = f"http://web.{namespace}.svc.cluster.local/versions.env"
    # a new Service reaches every node's kube-proxy within moments, not at once: like any client, retry
    fetch = (
        "import time, urllib.request as u\n"
        "for attempt in range(30):\n"
        "    try:\n"
        f"        print(u.urlopen({url!r}, timeout=5).read().decode()); break\n"
        "    except OSError as error:\n"
        "        print('retrying:', error); time.sleep(2)\n"
        "else:\n"
        "    raise SystemExit('no answer')\n"
    )
    client = pod("client", namespace, ingest_image, client_node, ["python", "-c", fetch])
    apply(e2e_cluster, client)
    assert wait_phase(e2e_cluster, namespace, "client", {"Succeeded"}) == "Succeeded"
    placed = {
        name: e2e_cluster.kubectl_json("get", "pod", "-n", namespace, name)["spec"]["nodeName"]
        for name in ("web", "client")
    }
    assert placed["web"] != placed["client"], placed
    assert "KUBERNETES_VERSION=" in e2e_cluster.kubectl("logs", "-n", namespace, "client")


def test_a_claim_of_the_default_storage_class_is_bound_and_writable(
    e2e_cluster: Any, namespace: str, ingest_image: str
) -> None:
    apply(
        e2e_cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
        },
    )
    writer = pod(
        "writer", namespace, ingest_image, worker_nodes(e2e_cluster)[-1],
        ["sh", "-c", "echo kept > /data/proof && cat /data/proof"],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )  # fmt: skip
    writer["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    apply(e2e_cluster, writer)
    assert wait_phase(e2e_cluster, namespace, "writer", {"Succeeded"}, timeout_s=240) == "Succeeded"
    assert e2e_cluster.kubectl("logs", "-n", namespace, "writer").strip() == "kept"
    claim = e2e_cluster.kubectl_json("get", "pvc", "-n", namespace, "data")
    assert claim["status"]["phase"] == "Bound"
