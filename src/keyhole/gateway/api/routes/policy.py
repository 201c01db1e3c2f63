"""The policy in force: show it, or apply a new one (`keyhole policy apply FILE`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.access.policy import PolicyError, parse_policy
from keyhole.gateway.access.policy_changes import Applied, default_policy_path, put_in_force
from keyhole.gateway.api.callers import Gateway, PolicyAdmin
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError
from keyhole.gateway.storage.models import User

router = APIRouter(prefix="/v1/policy", tags=["policy"])
MAX_POLICY = 1024 * 1024


class PolicyIn(BaseModel):
    text: str = Field(max_length=MAX_POLICY, description="the policy file's YAML")


class PolicyOut(BaseModel):
    in_force: bool = Field(description="false: no policy, the gateway's first rules (admins administer)")
    path: str | None = Field(description="the file the gateway reads at start and on SIGHUP")
    text: str


class AppliedOut(BaseModel):
    sha256: str
    roles: int
    path: str
    sessions_ended: list[str] = Field(description="sessions the new policy no longer allows, ended now")
    probes_removed: list[str] = Field(description="probes of kinds or reveal classes no longer granted")


def _apply(context: GatewayContext, text: str, by: str, target: Path) -> Applied:
    try:
        policy = parse_policy(text)  # here, off the event loop: a megabyte of YAML takes a while
    except PolicyError as exc:
        raise ApiError(400, f"the policy is refused, {exc}; nothing changed") from None
    with context.transaction() as db:
        accounts = set(db.scalars(select(User.name)))
    if not any("policy" in policy.abilities_of(name) for name in accounts):
        raise ApiError(
            400,
            "the policy is refused: no existing account would hold the 'policy' admin ability, so nobody could "
            "change it again through the gateway; give one (yours: " + repr(by) + ") a role with admin: [policy]",
        )
    return put_in_force(context, policy, text, by=f"user:{by}", source="api", write_to=target)


@router.get("")
def show_policy(_: PolicyAdmin, context: Gateway) -> PolicyOut:
    path = context.policy_path
    return PolicyOut(in_force=context.policy is not None, path=str(path) if path else None, text=context.policy_text)


@router.post("")
async def apply_policy(body: PolicyIn, who: PolicyAdmin, context: Gateway) -> AppliedOut:
    """Validate the whole policy, refuse it with the line and the reason, or record it, end what it no
    longer allows, write it to the gateway's policy file and put it in force."""
    target = context.policy_path or default_policy_path(context)
    applied = await run_in_threadpool(lambda: _apply(context, body.text, who.name, target))
    context.policy_path = target
    return AppliedOut(
        sha256=applied.sha256,
        roles=applied.roles,
        path=str(target),
        sessions_ended=applied.sessions_ended,
        probes_removed=applied.probes_removed,
    )
