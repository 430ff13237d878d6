"""A host-path volume provisioner: the default StorageClass of the project's own cluster.

Every node of that cluster is a network namespace on one machine, so a folder on the host is
reachable from every node, like a network volume: a claim can be ReadWriteOnce or ReadWriteMany.
The provisioner polls the API server; for each pending claim of its StorageClass it creates a
folder under ``--volumes-dir`` and a ``hostPath`` PersistentVolume bound to the claim (``claimRef``);
the PersistentVolume controller completes the binding. A released volume of reclaim policy
``Delete`` loses its folder and its PersistentVolume.

Run by ``userstream cluster up`` as a supervised process (``python -m userstream.cluster.provisioner``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from userstream.cluster.layout import PROVISIONER_NAME, STORAGE_CLASS

log = logging.getLogger("userstream.provisioner")
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_name(claim_uid: str) -> str:
    return f"pvc-{claim_uid}"


def volume_folder(volumes_dir: Path, namespace: str, claim: str, claim_uid: str) -> Path:
    return volumes_dir / f"{namespace}_{claim}_{claim_uid}"


def wants_volume(claim: dict[str, Any]) -> bool:
    """A claim this provisioner serves: our class, still pending, not bound to a volume yet."""
    spec = claim.get("spec") or {}
    status = claim.get("status") or {}
    return (
        spec.get("storageClassName") == STORAGE_CLASS
        and not spec.get("volumeName")
        and status.get("phase", "Pending") == "Pending"
        and not (claim.get("metadata") or {}).get("deletionTimestamp")
    )


def volume_for(claim: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The PersistentVolume (as a dict) that satisfies ``claim`` from ``folder``."""
    meta, spec = claim["metadata"], claim["spec"]
    requested = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(meta["uid"]),
            "annotations": {PROVISIONED_BY: PROVISIONER_NAME},
        },
        "spec": {
            "capacity": {"storage": requested},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(folder), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def released(volume: dict[str, Any]) -> bool:
    meta = volume.get("metadata") or {}
    return (
        (meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER_NAME
        and (volume.get("status") or {}).get("phase") == "Released"
        and (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"
    )


class Provisioner:
    def __init__(self, api: Any, volumes_dir: Path) -> None:
        self.api = api
        self.volumes_dir = volumes_dir

    def reconcile(self) -> None:
        claims = self.api.list_persistent_volume_claim_for_all_namespaces(_preload_content=False)
        volumes = self.api.list_persistent_volume(_preload_content=False)
        import json

        claim_items = json.loads(claims.data)["items"]
        volume_items = json.loads(volumes.data)["items"]
        existing = {v["metadata"]["name"] for v in volume_items}
        for claim in claim_items:
            if not wants_volume(claim) or volume_name(claim["metadata"]["uid"]) in existing:
                continue
            meta = claim["metadata"]
            folder = volume_folder(self.volumes_dir, meta["namespace"], meta["name"], meta["uid"])
            folder.mkdir(parents=True, exist_ok=True)
            # pods run as arbitrary non-root users and kubelet applies no fsGroup to host paths
            folder.chmod(0o777)
            self.api.create_persistent_volume(volume_for(claim, folder))
            log.info(
                "provisioned %s for %s/%s at %s",
                volume_name(meta["uid"]),
                meta["namespace"],
                meta["name"],
                folder,
            )
        for volume in volume_items:
            if not released(volume):
                continue
            path = Path(volume["spec"]["hostPath"]["path"])
            if path.parent == self.volumes_dir:
                shutil.rmtree(path, ignore_errors=True)
            self.api.delete_persistent_volume(volume["metadata"]["name"])
            log.info("deleted released %s and %s", volume["metadata"]["name"], path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m userstream.cluster.provisioner")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--volumes-dir", required=True, type=Path)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from kubernetes import client, config

    config.load_kube_config(config_file=args.kubeconfig)
    provisioner = Provisioner(client.CoreV1Api(), args.volumes_dir.resolve())
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving StorageClass %s from %s", STORAGE_CLASS, args.volumes_dir)
    while not stopping:
        try:
            provisioner.reconcile()
            if args.ready_file and not args.ready_file.exists():
                args.ready_file.write_text("ready\n")
        except Exception as exc:  # the API server may restart: keep going
            log.warning("reconcile failed: %s", exc)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
