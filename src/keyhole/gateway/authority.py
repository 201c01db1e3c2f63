"""The gateway's internal certificate authority: its own TLS server certificate and, for agents,
short-lived client certificates. ECDSA P-256 everywhere, because every TLS stack speaks it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = dt.timedelta(days=5 * 365)
SERVER_LIFETIME = dt.timedelta(days=365)
# A little slack for clocks that disagree by a minute or two.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyhole"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def create_ca(now: dt.datetime) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("keyhole gateway CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _subject_alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _leaf(
    ca: Issued,
    *,
    common_name: str,
    usage: x509.ObjectIdentifier,
    lifetime: dt.timedelta,
    now: dt.datetime,
    hosts: list[str] | None = None,
) -> Issued:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(_subject_alt_names(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(ca: Issued, hosts: list[str], now: dt.datetime) -> Issued:
    """The gateway's TLS certificate, valid for each of `hosts` (names or IP addresses)."""
    return _leaf(
        ca, common_name=hosts[0], usage=ExtendedKeyUsageOID.SERVER_AUTH, lifetime=SERVER_LIFETIME, now=now, hosts=hosts
    )


def issue_client(ca: Issued, common_name: str, lifetime: dt.timedelta, now: dt.datetime) -> Issued:
    """A client certificate for mutual TLS, named for the agent it belongs to."""
    return _leaf(ca, common_name=common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, lifetime=lifetime, now=now)
