"""The agent's identity towards its gateway: an ed25519 key it generates itself, and a short-lived
client certificate for it, first obtained with the enrollment token, then renewed over mutual TLS.

The private key exists only in this process's memory and in the TLS context built from it: Python's
ssl module loads keys only from a path, so the PEM goes through an anonymous memory file where the
system has one (Linux), otherwise a private temporary file removed at once.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from keyhole.agent.link import ed25519
from keyhole.agent.link.config import LinkConfig
from keyhole.agent.link.https_client import JsonClient
from keyhole.protocol.link import ENROLL_PATH, RENEW_PATH, enroll_proof_message, renew_proof_message

# Renew when this share of the certificate's life has passed.
RENEW_AT = 2 / 3


@dataclass(frozen=True)
class Identity:
    credential: str
    context: ssl.SSLContext
    issued_at: float
    expires_at: float
    signing_key: bytes  # the gateway's probe-signing public key, learned over the enrollment's TLS
    agent_port: int

    @property
    def renew_at(self) -> float:
        return self.issued_at + (self.expires_at - self.issued_at) * RENEW_AT

    def renew_due(self, now: float) -> bool:
        return now >= self.renew_at


def server_context(ca_pem: str) -> ssl.SSLContext:
    """Trust the gateway's own CA only (not the system's), and check its host name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=ca_pem)
    return context


@contextlib.contextmanager
def _pem_paths(cert_pem: bytes, key_pem: bytes) -> Iterator[tuple[str, str]]:
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fds = [memfd("keyhole-cert", os.MFD_CLOEXEC), memfd("keyhole-key", os.MFD_CLOEXEC)]
        try:
            for fd, data in zip(fds, (cert_pem, key_pem), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    directory = tempfile.mkdtemp(prefix="keyhole-")
    try:
        paths = (os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
        for path, data in zip(paths, (cert_pem, key_pem), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def client_context(ca_pem: str, cert_pem: str, seed: bytes) -> ssl.SSLContext:
    context = server_context(ca_pem)
    with _pem_paths(cert_pem.encode(), ed25519.private_key_pem(seed)) as (cert_path, key_path):
        context.load_cert_chain(cert_path, key_path)
    return context


def _new_key() -> tuple[bytes, bytes]:
    seed = ed25519.generate_seed()
    return seed, ed25519.public_key(seed)


def enroll(config: LinkConfig) -> Identity:
    """Trade the enrollment token for a certificate. Raises LinkDown or LinkRefused."""
    seed, public = _new_key()
    proof = ed25519.sign(seed, enroll_proof_message(config.token, public))
    client = JsonClient(config.host, config.port, server_context(config.ca_pem))
    try:
        answer = client.request(
            "POST",
            ENROLL_PATH,
            {
                "token": config.token,
                "service": config.service,
                "public_key": base64.b64encode(public).decode(),
                "proof": base64.b64encode(proof).decode(),
            },
        )
    finally:
        client.close()
    return Identity(
        credential=str(answer["credential"]),
        context=client_context(config.ca_pem, str(answer["cert_pem"]), seed),
        issued_at=time.time(),
        expires_at=float(answer["cert_expires_at"]),
        signing_key=base64.b64decode(answer["signing_key"]),
        agent_port=int(answer["agent_port"]),
    )


def renew(config: LinkConfig, identity: Identity, client: JsonClient) -> Identity:
    """A new key and certificate, asked for over the current mutual-TLS connection."""
    seed, public = _new_key()
    proof = ed25519.sign(seed, renew_proof_message(identity.credential, public))
    answer = client.request(
        "POST",
        RENEW_PATH,
        {"public_key": base64.b64encode(public).decode(), "proof": base64.b64encode(proof).decode()},
    )
    return Identity(
        credential=identity.credential,
        context=client_context(config.ca_pem, str(answer["cert_pem"]), seed),
        issued_at=time.time(),
        expires_at=float(answer["cert_expires_at"]),
        signing_key=identity.signing_key,
        agent_port=identity.agent_port,
    )
