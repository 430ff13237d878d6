"""The project's own cluster: addresses, rendered configuration, certificates, host journal (no root)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from userstream.cluster import addons, host, layout
from userstream.cluster.layout import ClusterLayout
from userstream.cluster.pki import CertSpec, Pki
from userstream.cluster.provisioner import released, volume_for, wants_volume


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterLayout:
    return ClusterLayout(state_dir=tmp_path)


def test_two_nodes_with_distinct_addresses_pod_ranges_and_cgroups(cluster: ClusterLayout) -> None:
    nodes = cluster.nodes
    assert [n.name for n in nodes] == ["node1", "node2"]
    assert len({n.address for n in nodes}) == 2
    assert len({n.pod_cidr for n in nodes}) == 2
    assert len({n.cgroup_root for n in nodes}) == 2
    assert len({n.netns for n in nodes} | {cluster.hub_netns}) == 3
    node_net = ipaddress.ip_network(layout.NODE_NETWORK)
    pods = ipaddress.ip_network(layout.POD_CIDR)
    for node in nodes:
        assert ipaddress.ip_address(node.address) in node_net
        assert ipaddress.ip_network(node.pod_cidr).subnet_of(pods)
    # no range overlaps another: services, pods, nodes, the host link
    ranges = [
        ipaddress.ip_network(r)
        for r in (layout.SERVICE_CIDR, layout.POD_CIDR, layout.NODE_NETWORK, layout.HOST_LINK_CIDR)
    ]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert ipaddress.ip_address(layout.DNS_SERVICE_IP) in ranges[0]
    assert ipaddress.ip_address(layout.HOST_ADDRESS) in ipaddress.ip_network(layout.HOST_LINK_CIDR)


def test_interface_names_fit_the_kernel_limit(cluster: ClusterLayout) -> None:
    names = [cluster.host_link, cluster.hub_uplink, cluster.hub_bridge, *(n.hub_link for n in cluster.nodes)]
    assert all(len(name) <= 15 for name in names), names  # IFNAMSIZ - 1


def test_containerd_config_is_per_node_and_restricts_oom_score(cluster: ClusterLayout) -> None:
    node1, node2 = cluster.nodes
    one = layout.render_containerd_config(node1, sandbox_image="pause:1", cni_bin_dir="/usr/lib/cni")
    two = layout.render_containerd_config(node2, sandbox_image="pause:1", cni_bin_dir="/usr/lib/cni")
    assert str(node1.containerd_socket) in one
    assert str(node2.containerd_socket) in two
    assert str(node1.home) in one
    assert str(node1.home) not in two
    assert "restrict_oom_score_adj = true" in one
    assert "SystemdCgroup = false" in one
    assert 'sandbox_image = "pause:1"' in one


def test_cni_config_uses_the_node_pod_range(cluster: ClusterLayout) -> None:
    node = cluster.nodes[1]
    config = json.loads(layout.render_cni_config(node))
    bridge = config["plugins"][0]
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.pod_cidr}]]
    assert bridge["ipMasq"] is False  # the hub routes pod ranges: pod addresses stay visible
    assert bridge["ipam"]["dataDir"].startswith(str(node.home))


def test_kubelet_config_keeps_everything_in_the_state_folder(cluster: ClusterLayout, tmp_path: Path) -> None:
    node = cluster.nodes[0]
    config = json.loads(
        layout.render_kubelet_config(
            node,
            ca_file=tmp_path / "ca",
            cert_file=tmp_path / "c",
            key_file=tmp_path / "k",
            resolv_conf=tmp_path / "r",
        )
    )
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == node.cgroup_root
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    assert config["podLogsDir"].startswith(str(node.home))
    assert config["containerRuntimeEndpoint"] == f"unix://{node.containerd_socket}"
    assert config["clusterDNS"] == [layout.DNS_SERVICE_IP]
    assert config["resolvConf"] == str(tmp_path / "r")


def test_kube_proxy_leaves_conntrack_sysctls_alone(cluster: ClusterLayout, tmp_path: Path) -> None:
    config = json.loads(layout.render_kube_proxy_config(cluster.nodes[0], kubeconfig=tmp_path / "kc"))
    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["hostnameOverride"] == "node1"


def test_corefile_forwards_nothing_outside_the_cluster() -> None:
    corefile = layout.render_corefile()
    assert "forward" not in corefile
    assert f"kubernetes {layout.CLUSTER_DOMAIN}" in corefile


def test_coredns_runs_unprivileged_behind_the_conventional_service() -> None:
    objects = {o["kind"]: o for o in addons.coredns_objects("userstream-coredns:1")}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert f".:{addons.DNS_PORT} {{" in objects["ConfigMap"]["data"]["Corefile"]
    service = objects["Service"]["spec"]
    assert service["clusterIP"] == layout.DNS_SERVICE_IP
    assert {p["port"] for p in service["ports"]} == {53}
    assert {p["targetPort"] for p in service["ports"]} == {addons.DNS_PORT}


def test_storage_class_is_the_default() -> None:
    sc = addons.storage_class()
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == layout.PROVISIONER_NAME


def test_kubeconfig_names_server_and_client_certificate(tmp_path: Path) -> None:
    config = json.loads(
        layout.render_kubeconfig(
            server="https://10.0.0.1:6443",
            ca_file=tmp_path / "ca",
            cert_file=tmp_path / "c",
            key_file=tmp_path / "k",
            user="u",
        )
    )
    assert config["clusters"][0]["cluster"]["server"] == "https://10.0.0.1:6443"
    assert config["users"][0]["user"]["client-key"] == str(tmp_path / "k")
    assert config["current-context"] == "userstream"


def test_pki_issues_node_identities_the_node_authorizer_accepts(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert_path, key_path = pki.ensure(CertSpec("node1", "system:node:node1", ("system:nodes",)))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert cert.issuer == ca.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert key_path.stat().st_mode & 0o777 == 0o600
    # kept on the next call: a restarted cluster keeps its identities
    before = cert_path.read_bytes()
    pki.ensure(CertSpec("node1", "system:node:node1", ("system:nodes",)))
    assert cert_path.read_bytes() == before


def test_serving_certificate_has_the_addresses_clients_use(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert_path, _ = pki.ensure(
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            client=False,
            ip_addresses=(layout.HUB_UPLINK_ADDRESS,),
        )
    )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(layout.HUB_UPLINK_ADDRESS) in names.get_values_for_type(x509.IPAddress)


def test_journal_restores_sysctls_and_removes_only_folders_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc_sys = tmp_path / "proc-sys"
    (proc_sys / "kernel").mkdir(parents=True)
    (proc_sys / "kernel" / "panic").write_text("1\n")
    monkeypatch.setattr(host, "PROC_SYS", proc_sys)
    journal = host.Journal(tmp_path / "state" / "journal.json")
    journal.remember_sysctls(["kernel/panic", "kernel/absent"])
    (proc_sys / "kernel" / "panic").write_text("10\n")  # what kubelet does
    # a second `up` must not overwrite the value recorded before the first one
    host.Journal(journal.path).remember_sysctls(["kernel/panic"])
    existing = tmp_path / "existing"
    existing.mkdir()
    journal = host.Journal(journal.path)
    # what `up` does before kubelet and containerd create their folders outside the state folder
    journal.remember_absent([existing, existing / "child", tmp_path / "new"])
    (existing / "child").mkdir()
    (tmp_path / "new" / "deeper").mkdir(parents=True)
    assert host.Journal(journal.path).restore_sysctls() == {"kernel/panic": "1"}
    assert (proc_sys / "kernel" / "panic").read_text() == "1"
    removed = host.Journal(journal.path).remove_created_dirs()
    assert sorted(removed) == sorted([str(existing / "child"), str(tmp_path / "new")])
    assert existing.is_dir()


def test_in_netns_switches_only_the_network_namespace() -> None:
    argv = host.in_netns("userstream-node1", ["kubelet", "--v=1"])
    assert argv == ["nsenter", "--net=/run/netns/userstream-node1", "--", "kubelet", "--v=1"]


def _claim(**spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": "data", "namespace": "ns", "uid": "u-1"},
        "spec": {
            "storageClassName": layout.STORAGE_CLASS,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "2Gi"}},
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def test_provisioner_serves_only_pending_claims_of_its_class(tmp_path: Path) -> None:
    assert wants_volume(_claim())
    assert not wants_volume(_claim(storageClassName="other"))
    assert not wants_volume(_claim(volumeName="pv-x"))
    volume = volume_for(_claim(), tmp_path / "v")
    assert volume["spec"]["claimRef"]["uid"] == "u-1"
    assert volume["spec"]["capacity"] == {"storage": "2Gi"}
    assert volume["spec"]["hostPath"]["path"] == str(tmp_path / "v")
    released_volume = {**volume, "status": {"phase": "Released"}}
    assert released(released_volume)
    assert not released({**volume, "status": {"phase": "Bound"}})
