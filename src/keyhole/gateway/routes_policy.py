"""The policy in force: show it, or apply a new one (`keyhole policy apply FILE`)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.api_auth import Gateway, PolicyAdmin
from keyhole.gateway.api_errors import ApiError
from keyhole.gateway.policy import PolicyError, parse_policy
from keyhole.gateway.policy_changes import default_policy_path, put_in_force

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


@router.get("")
def show_policy(_: PolicyAdmin, context: Gateway) -> PolicyOut:
    path = context.policy_path
    return PolicyOut(in_force=context.policy is not None, path=str(path) if path else None, text=context.policy_text)


@router.post("")
async def apply_policy(body: PolicyIn, who: PolicyAdmin, context: Gateway) -> AppliedOut:
    """Validate the whole policy, refuse it with the line and the reason, or record it, end what it no
    longer allows, write it to the gateway's policy file and put it in force."""
    try:
        policy = parse_policy(body.text)
    except PolicyError as exc:
        raise ApiError(400, f"the policy is refused, {exc}; nothing changed") from None
    if not any("policy" in policy.abilities_of(user) for user in policy.users):
        raise ApiError(
            400,
            "the policy is refused: no user in it holds the 'policy' admin ability, so nobody could change it "
            "again through the gateway; keep a role with admin: [policy] that a user holds",
        )
    target = context.policy_path or default_policy_path(context)
    applied = await run_in_threadpool(
        lambda: put_in_force(context, policy, body.text, by=f"user:{who.name}", source="api", write_to=target)
    )
    context.policy_path = target
    return AppliedOut(
        sha256=applied.sha256,
        roles=applied.roles,
        path=str(target),
        sessions_ended=applied.sessions_ended,
        probes_removed=applied.probes_removed,
    )
