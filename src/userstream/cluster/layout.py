"""The shape of the project's own Kubernetes cluster: names, addresses and every config file.

Pure logic only (no I/O): :class:`ClusterLayout` says where everything lives and which address
each part has; the ``render_*`` functions return the text of each component's configuration.
:mod:`userstream.cluster.cluster` writes them and starts the processes.

Network (all of it inside network namespaces of the cluster's own; the host gains one veth link)::

    host  us-host0 10.234.0.1/30 ──veth── us-up0 10.234.0.2/30  netns "<prefix>-hub"
                                          bridge us-br0 10.235.0.1/24
                                          etcd, kube-apiserver, controller manager, scheduler
                   ┌──────────────────────────────┴─────────────────────────────┐
    netns "<prefix>-node1"  eth0 10.235.0.11                netns "<prefix>-node2"  eth0 10.235.0.12
    containerd, kubelet, kube-proxy                         containerd, kubelet, kube-proxy
    bridge cni0, pods 10.244.1.0/24                         bridge cni0, pods 10.244.2.0/24

The hub routes each node's pod range to that node and the service range to node1 (whose
kube-proxy translates it), so the API server reaches webhooks behind Services. Traffic from the
cluster to the host leaves the hub masqueraded as 10.234.0.2: the host needs no route, no
iptables rule and no forwarding; it sees the cluster only at 10.234.0.2 (the API server, port 6443),
and pods see the host's servers at 10.234.0.1.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

CLUSTER_DOMAIN = "cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
POD_CIDR = "10.244.0.0/16"
HOST_LINK_CIDR = "10.234.0.0/30"
HOST_ADDRESS = "10.234.0.1"
HUB_UPLINK_ADDRESS = "10.234.0.2"
NODE_NETWORK = "10.235.0.0/24"
HUB_BRIDGE_ADDRESS = "10.235.0.1"
APISERVER_PORT = 6443
KUBELET_PORT = 10250
STORAGE_CLASS = "userstream-hostpath"
PROVISIONER_NAME = "userstream.dev/hostpath"

# Global (not per network namespace) kernel settings kubelet writes at start-up; `down` puts back
# the values they had before `up` (Kubernetes v1.34 pkg/kubelet/cm/container_manager_linux.go,
# setupKernelTunables, with protectKernelDefaults false).
KUBELET_GLOBAL_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


@dataclass(frozen=True)
class Node:
    name: str
    index: int
    prefix: str
    state_dir: Path

    @property
    def netns(self) -> str:
        return f"{self.prefix}-{self.name}"

    @property
    def address(self) -> str:
        return str(ipaddress.ip_network(NODE_NETWORK)[10 + self.index])

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def hub_link(self) -> str:
        """Name of the hub's end of the node's veth (the node's end is eth0 in its namespace)."""
        return f"us-{self.name}"

    @property
    def home(self) -> Path:
        return self.state_dir / self.name

    @property
    def containerd_socket(self) -> Path:
        return self.home / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.home / "kubelet"

    @property
    def cgroup_root(self) -> str:
        return f"/{self.prefix}-{self.name}"


@dataclass(frozen=True)
class ClusterLayout:
    state_dir: Path
    prefix: str = "userstream"
    node_count: int = 2

    @property
    def hub_netns(self) -> str:
        return f"{self.prefix}-hub"

    @property
    def host_link(self) -> str:
        return "us-host0"

    @property
    def hub_uplink(self) -> str:
        return "us-up0"

    @property
    def hub_bridge(self) -> str:
        return "us-br0"

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(
            Node(name=f"node{i}", index=i, prefix=self.prefix, state_dir=self.state_dir)
            for i in range(1, self.node_count + 1)
        )

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The administrator's kubeconfig (server at the hub's address the host can reach)."""
        return self.state_dir / "kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://{HUB_UPLINK_ADDRESS}:{APISERVER_PORT}"

    @property
    def in_cluster_api_url(self) -> str:
        """What nodes use: the hub's bridge address (also the API server's advertise address)."""
        return f"https://{HUB_BRIDGE_ADDRESS}:{APISERVER_PORT}"


# --- rendering ------------------------------------------------------------------------------------


def render_kubeconfig(*, server: str, ca_file: Path, cert_file: Path, key_file: Path, user: str) -> str:
    """A kubeconfig with one cluster, one user (client certificate) and one context, as JSON."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "userstream", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert_file), "client-key": str(key_file)}}
        ],
        "contexts": [{"name": "userstream", "context": {"cluster": "userstream", "user": user}}],
        "current-context": "userstream",
    }
    return json.dumps(config, indent=2) + "\n"


def render_containerd_config(node: Node, *, sandbox_image: str, cni_bin_dir: str) -> str:
    """containerd 1.6 configuration (version 2) for one node: its own root, state and socket.

    ``restrict_oom_score_adj``: runc cannot lower a container's OOM score without
    CAP_SYS_RESOURCE, which this kind of machine lacks (containerd 1.6 docs/cri/config.md).
    ``netns_mounts_under_state_dir`` (containerd 1.6.20 CRI config) keeps the pods' network
    namespaces under the node's folder.
    """
    base = node.home / "containerd"
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  enable_selinux = false
  # pods' network namespaces under the state folder, not /run/netns, so `down` finds them
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "{node.home / "cni" / "net.d"}"
"""


def render_cni_config(node: Node) -> str:
    """A bridge network for the node's pods; the hub routes the node's pod range to it."""
    config = {
        "cniVersion": "0.4.0",
        "name": "userstream",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.home / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def render_kubelet_config(
    node: Node, *, ca_file: Path, cert_file: Path, key_file: Path, resolv_conf: Path
) -> str:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1) for one node, as JSON (valid YAML)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.address,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert_file),
        "tlsPrivateKeyFile": str(key_file),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "failSwapOn": False,
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # pods resolve through the cluster DNS only, never through the host's resolvers
        "resolvConf": str(resolv_conf),
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "podLogsDir": str(node.home / "pod-logs"),
        "serializeImagePulls": False,
        # one disk for everything here: never evict or collect images for space
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "maxPods": 60,
        "protectKernelDefaults": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }
    return json.dumps(config, indent=2) + "\n"


def render_kube_proxy_config(node: Node, *, kubeconfig: Path) -> str:
    """KubeProxyConfiguration in iptables mode; it leaves the conntrack sysctls alone."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": node.name,
        "bindAddress": node.address,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # every Service connection leaves masqueraded: replies between pods on one bridge and
        # traffic forwarded from the hub return through this node's conntrack
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return json.dumps(config, indent=2) + "\n"


def render_corefile() -> str:
    """CoreDNS answers for the cluster domain only: nothing is forwarded outside the cluster."""
    return f""".:53 {{
    errors
    health {{
        lameduck 5s
    }}
    ready
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    hosts {{
        {HOST_ADDRESS} host.userstream.internal
        fallthrough
    }}
    cache 30
    loop
    reload
}}
"""
