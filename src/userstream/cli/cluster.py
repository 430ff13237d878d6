"""``userstream cluster ...``: up, down, status, logs, images of the project's own Kubernetes cluster."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from userstream.errors import UserstreamError
from userstream.local import processes
from userstream.local.stack import format_status
from userstream.settings import load_settings

if TYPE_CHECKING:
    from userstream.cluster.cluster import LocalCluster


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="the project's own Kubernetes cluster: a control plane and two worker nodes on this machine",
        description="A real Kubernetes cluster from registry artifacts (no Docker): etcd, kube-apiserver, "
        "kube-controller-manager, kube-scheduler, and two nodes, each with containerd, kubelet and "
        "kube-proxy in a network namespace of its own; CoreDNS and a default StorageClass. Needs root. "
        "State in USERSTREAM_CLUSTER_DIR (default ./.local-cluster); binaries and images in "
        "USERSTREAM_CACHE_DIR (default ./.cache).",
    )
    commands = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="build what is missing, start what is not running, wait until Ready")
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop everything and undo every change to the host")
    down.add_argument("--purge", action="store_true", help="also delete the state folder (cluster data)")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="processes, nodes and pods per node; exit 1 unless healthy")
    status.set_defaults(func=cmd_status)

    logs = commands.add_parser("logs", help="print the end of a component's log")
    logs.add_argument("component", help="e.g. kube-apiserver, node1-kubelet, node2-containerd")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    logs.set_defaults(func=cmd_logs)

    build = commands.add_parser(
        "build", help="build the cluster's binaries and every image here (cached); no cluster needed"
    )
    build.set_defaults(func=cmd_build)

    images = commands.add_parser(
        "images", help="build the project's images here and load them into the nodes"
    )
    images.add_argument("names", nargs="*", metavar="IMAGE", help="default: every image")
    images.set_defaults(func=cmd_images)


def _cluster() -> LocalCluster:
    from userstream.cluster.cluster import LocalCluster

    return LocalCluster(load_settings())


def cmd_up(args: argparse.Namespace) -> int:
    from userstream.cluster.cluster import format_nodes

    cluster = _cluster()
    try:
        statuses = cluster.up()
    except BaseException:
        # a failed `up` leaves nothing behind on the host: stop what it started, undo what it changed
        # (the logs stay in the state folder for `userstream cluster logs`)
        print("userstream: cluster up failed; taking down what it started", file=sys.stderr)
        cluster.down()
        raise
    print(format_status(statuses))
    print()
    print(format_nodes(cluster.node_status()))
    print(f"\nexport KUBECONFIG={cluster.layout.kubeconfig}")
    return 0 if all(s.healthy for s in statuses) else 1


def cmd_down(args: argparse.Namespace) -> int:
    for name, outcome in _cluster().down(purge=args.purge).items():
        print(f"{name:<24} {outcome}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from userstream.cluster.cluster import format_nodes

    cluster = _cluster()
    statuses = cluster.status()
    print(format_status(statuses))
    total = sum(s.rss_bytes or 0 for s in statuses)
    print(f"\nmemory of the cluster's processes (RSS, with their children): {processes.format_bytes(total)}")
    nodes = cluster.node_status()
    if nodes:
        print()
        print(format_nodes(nodes))
    healthy = all(s.healthy for s in statuses) and nodes and all(n.ready == "Ready" for n in nodes)
    if not healthy:
        print("\nnot healthy: `userstream cluster up` starts what is stopped", file=sys.stderr)
        return 1
    print(f"\nexport KUBECONFIG={cluster.layout.kubeconfig}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = _cluster()
    component = cluster.component(args.component)
    if not component.log_file.exists():
        raise UserstreamError(f"no log yet at {component.log_file}: `userstream cluster up` starts it")
    print(processes.tail(component.log_file, args.lines))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    began = time.monotonic()
    tars = _cluster().build()
    print(f"cluster build: binaries and {len(tars)} images ready in {time.monotonic() - began:.0f} s")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    cluster = _cluster()
    began = time.monotonic()
    tars = cluster.build_images(args.names)
    running = [c for c in cluster.containerds if c.running_record() is not None]
    if running:
        cluster.load_images(tars)
    else:
        print("the cluster is not running: images built, not loaded (`userstream cluster up` then again)")
    print(f"images done in {time.monotonic() - began:.0f} s")
    return 0
