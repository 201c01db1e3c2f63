"""Enrollment, on the user API listener: admins mint tokens; an agent that has no certificate yet
trades one for its first certificate (it cannot reach the agent listener without one)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, Field

from keyhole.gateway.agents.enrollment import DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL, MintedToken, mint_token, redeem
from keyhole.gateway.api.callers import EnrollmentAdmin, Gateway
from keyhole.gateway.audit.log import append
from keyhole.gateway.errors import ApiError
from keyhole.protocol.durations import format_duration, parse_duration
from keyhole.protocol.errors import SpecError
from keyhole.protocol.link import ENROLL_PATH, check_labels, check_service

router = APIRouter(tags=["agents"])


def _service(value: object) -> str:
    try:
        return check_service(value)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


def _labels(value: object) -> dict[str, str]:
    try:
        return check_labels(value)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


ServiceName = Annotated[str, BeforeValidator(_service)]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]


def seconds(value: float | str | None, default: float, limit: float, what: str) -> float:
    if value is None:
        return default
    try:
        result = parse_duration(value, what)
    except SpecError as exc:
        raise ApiError(400, str(exc)) from None
    if result > limit:
        raise ApiError(400, f"{what} may be at most {format_duration(limit)}")
    return result


class TokenRequest(BaseModel):
    service: ServiceName
    ttl: float | str | None = Field(default=None, description="how long the token stays valid, e.g. 10m")
    labels: Labels = Field(default_factory=dict)


class EnrollRequest(BaseModel):
    token: str = Field(min_length=1, max_length=256)
    service: ServiceName
    public_key: str = Field(description="the agent's ed25519 public key, base64", max_length=64)
    proof: str = Field(description="signature of the enrollment proof message, base64", max_length=128)


class EnrollResponse(BaseModel):
    credential: str
    service: str
    labels: dict[str, str]
    cert_pem: str
    cert_expires_at: float
    agent_port: int
    signing_key: str = Field(description="the gateway's ed25519 probe-signing public key, base64")


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what} must be base64") from None


@router.post("/v1/enroll-tokens", status_code=201)
def create_enroll_token(body: TokenRequest, who: EnrollmentAdmin, context: Gateway) -> MintedToken:
    ttl = seconds(body.ttl, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL, "token ttl")
    with context.audited() as db:
        minted = mint_token(db, who.user_id, body.service, body.labels, ttl)
        append(db, f"user:{who.name}", "enroll_token.create", service=body.service, labels=body.labels, ttl=ttl)
        return minted


@router.post(ENROLL_PATH, responses={401: {"description": "unknown, used or expired token"}})
def enroll(body: EnrollRequest, context: Gateway) -> EnrollResponse:
    public_key, proof = _b64(body.public_key, "public_key"), _b64(body.proof, "proof")
    with context.audited() as db:
        issued = redeem(
            db,
            context.ca,
            token=body.token,
            service=body.service,
            public_key=public_key,
            proof=proof,
            lifetime=context.agent_cert_ttl,
        )
        append(db, f"credential:{issued.credential}", "agent.enroll", service=issued.service)
    raw_signing = context.signing_key.public_key().public_bytes_raw()
    return EnrollResponse(
        credential=issued.credential,
        service=issued.service,
        labels=issued.labels,
        cert_pem=issued.cert_pem,
        cert_expires_at=issued.expires_at,
        agent_port=context.agent_port,
        signing_key=base64.b64encode(raw_signing).decode(),
    )
