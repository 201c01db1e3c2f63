"""The gateway's internal certificate authority: its own TLS server certificate and, for agents,
short-lived client certificates. The CA and the server use ECDSA P-256, because every TLS stack
speaks it; agents bring ed25519 keys, which a standard-library-only agent can generate itself."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
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
    public_key: ed25519.Ed25519PublicKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | None]:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key: ec.EllipticCurvePrivateKey | None = None
    subject_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    if public_key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject_key = key.public_key()
    else:
        subject_key = public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key)
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
    return builder.sign(ca_key, hashes.SHA256()), key


def _issued(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> Issued:
    assert key is not None
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(ca: Issued, hosts: list[str], now: dt.datetime) -> Issued:
    """The gateway's TLS certificate, valid for each of `hosts` (names or IP addresses)."""
    return _issued(
        *_leaf(
            ca,
            common_name=hosts[0],
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            lifetime=SERVER_LIFETIME,
            now=now,
            hosts=hosts,
        )
    )


def issue_client(ca: Issued, common_name: str, lifetime: dt.timedelta, now: dt.datetime) -> Issued:
    """A client certificate (and its new key) for mutual TLS."""
    return _issued(
        *_leaf(ca, common_name=common_name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, lifetime=lifetime, now=now)
    )


def certify_agent_key(
    ca: Issued, common_name: str, public_key: ed25519.Ed25519PublicKey, lifetime: dt.timedelta, now: dt.datetime
) -> bytes:
    """A client certificate for a key the agent generated itself (its private key never leaves it)."""
    cert, _ = _leaf(
        ca,
        common_name=common_name,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        lifetime=lifetime,
        now=now,
        public_key=public_key,
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca(cert_pem: bytes, key_pem: bytes) -> Issued:
    """The CA from its files; ValueError if either is damaged or they do not belong together."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError("the CA key does not belong to the CA certificate")
    return Issued(cert_pem, key_pem)
