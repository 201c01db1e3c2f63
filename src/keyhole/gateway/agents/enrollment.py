"""Agent enrollment: an admin mints a single-use token for one service; an agent trades it, with the
public half of a key it generated, for a short-lived client certificate; later it renews that
certificate over mutual TLS with a fresh key. The gateway never sees an agent's private key."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import update
from sqlalchemy.orm import Session

from keyhole.gateway.agents.authority import Issued, certify_agent_key
from keyhole.gateway.errors import AuthError, GatewayError
from keyhole.gateway.storage.models import AgentCredential, EnrollToken
from keyhole.protocol.link import ENROLL_TOKEN_PREFIX, enroll_proof_message, renew_proof_message

DEFAULT_TOKEN_TTL = 10 * 60.0
MAX_TOKEN_TTL = 24 * 3600.0
_BAD_TOKEN = (
    "the enrollment token is not valid (unknown, already used or expired); "
    "ask an admin for a new one: keyhole agent enroll-token"
)


class EnrollmentError(GatewayError):
    """A request to enroll or renew that is refused; the message says why."""


@dataclass(frozen=True)
class MintedToken:
    token: str
    service: str
    labels: dict[str, str]
    expires_at: float


@dataclass(frozen=True)
class AgentCertificate:
    credential: str
    service: str
    labels: dict[str, str]
    cert_pem: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint_token(db: Session, user_id: int, service: str, labels: dict[str, str], ttl: float) -> MintedToken:
    now = time.time()
    token = ENROLL_TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(
        EnrollToken(
            digest=_digest(token),
            service=service,
            labels=json.dumps(labels, sort_keys=True),
            created_by=user_id,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return MintedToken(token, service, labels, now + ttl)


def _public_key(raw: bytes, proof: bytes, message: bytes) -> Ed25519PublicKey:
    try:
        key = Ed25519PublicKey.from_public_bytes(raw)
        key.verify(proof, message)
    except (ValueError, InvalidSignature):
        raise EnrollmentError("the key proof does not verify: the agent must sign with the key it sends") from None
    return key


def _certify(ca: Issued, credential: AgentCredential, key: Ed25519PublicKey, lifetime: float) -> AgentCertificate:
    now = time.time()
    pem = certify_agent_key(ca, credential.id, key, dt.timedelta(seconds=lifetime), dt.datetime.now(dt.UTC))
    credential.cert_expires_at = now + lifetime
    return AgentCertificate(
        credential.id, credential.service, json.loads(credential.labels), pem.decode(), credential.cert_expires_at
    )


def redeem(
    db: Session, ca: Issued, *, token: str, service: str, public_key: bytes, proof: bytes, lifetime: float
) -> AgentCertificate:
    """Trade a token for a certificate. The token is claimed in one statement, so two agents racing
    with the same token cannot both succeed."""
    now = time.time()
    row = db.get(EnrollToken, _digest(token))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise AuthError(_BAD_TOKEN)
    if row.service != service:
        raise EnrollmentError(
            f"this enrollment token is for service {row.service!r}, not {service!r}; "
            "start the agent with the service the token names, or mint a token for this one"
        )
    key = _public_key(public_key, proof, enroll_proof_message(token, public_key))
    credential = AgentCredential(
        id="agt-" + secrets.token_hex(12),
        service=row.service,
        labels=row.labels,
        enrolled_at=now,
        cert_expires_at=now,
    )
    claim = db.execute(
        update(EnrollToken)
        .where(EnrollToken.digest == row.digest, EnrollToken.used_at.is_(None))
        .values(used_at=now, credential_id=credential.id)
        .execution_options(synchronize_session=False)
    )
    if getattr(claim, "rowcount", 0) != 1:
        raise AuthError(_BAD_TOKEN)
    db.add(credential)
    return _certify(ca, credential, key, lifetime)


def renew(
    db: Session, ca: Issued, *, credential_id: str, public_key: bytes, proof: bytes, lifetime: float
) -> AgentCertificate:
    credential = db.get(AgentCredential, credential_id)
    if credential is None or credential.revoked_at is not None:
        raise AuthError("this agent's enrollment was revoked or is unknown; enroll it again with a new token")
    key = _public_key(public_key, proof, renew_proof_message(credential_id, public_key))
    return _certify(ca, credential, key, lifetime)
