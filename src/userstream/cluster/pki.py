"""Certificates of the project's own cluster: one CA, a certificate per client and server.

Generated into the cluster's state folder on the first ``up`` and reused afterwards; nothing is
kept in code. Client identities follow Kubernetes' conventions (CN is the user, O the groups):
``system:node:<name>`` in ``system:nodes`` for kubelets (the Node authorizer needs exactly that),
``system:kube-controller-manager``, ``system:kube-scheduler``, ``system:kube-proxy`` and an
administrator in ``system:masters``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from userstream.local.processes import write_private

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertSpec:
    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = True
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


def _key_bytes(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Pki:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def ensure_ca(self) -> None:
        if self.ca_cert.is_file() and self.ca_key.is_file():
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "userstream-cluster-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY * 2)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        write_private(self.ca_key, _key_bytes(key))
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def ensure_service_account_key(self) -> None:
        if self.service_account_key.is_file() and self.service_account_pub.is_file():
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(self.service_account_key, _key_bytes(key))
        self.service_account_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def ensure(self, spec: CertSpec) -> tuple[Path, Path]:
        """The certificate and key of ``spec``, issued by the CA (kept if already there)."""
        cert_path, key_path = self.cert(spec.name), self.key(spec.name)
        if cert_path.is_file() and key_path.is_file():
            return cert_path, key_path
        self.ensure_ca()
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in spec.organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
        usages = []
        if spec.server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if spec.client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(key_path, _key_bytes(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path
