"""What a caller may do, under the policy in force: the grant a user's roles add up to for a service,
and refusals that are recorded before they are answered.

Without a policy (`keyhole gateway serve` with no policy file) the gateway keeps its first rules: any
engineer may debug any service, nothing is revealed, and admins administer. With one, it is deny by
default: a session needs a role that reaches the service, a probe kind its roles grant, and no longer
than their longest session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from keyhole.gateway.access.approvals import APPROVED, active_grant
from keyhole.gateway.access.policy import ADMIN_ABILITIES, LONGEST_SESSION, Policy, Role
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.identity.tokens import Caller
from keyhole.gateway.sessions.debug_sessions import MAX_TTL, Observer
from keyhole.gateway.storage.models import AccessRequest
from keyhole.protocol.durations import format_duration
from keyhole.protocol.probe_spec import KINDS


@dataclass(frozen=True)
class Grant:
    """What a user may do in a session on one service."""

    probes: frozenset[str]
    max_session: float
    reveal: tuple[str, ...]
    grant_id: str | None = None  # the approved access request a session under this grant depends on


OPEN = Grant(probes=frozenset(KINDS), max_session=MAX_TTL, reveal=())


def abilities(context: GatewayContext, who: Caller) -> frozenset[str]:
    """The admin abilities the caller holds: from the policy's roles, or without a policy all of them
    for the users `gateway init` and `user add --role admin` made admins."""
    if context.policy is None:
        return frozenset(ADMIN_ABILITIES) if who.role == "admin" else frozenset()
    return context.policy.abilities_of(who.name)


def require(context: GatewayContext, who: Caller, ability: str) -> None:
    if ability in abilities(context, who):
        return
    if context.policy is None:
        raise Forbidden(f"user {who.name!r} is not an admin; ask an admin to do this")
    raise Forbidden(
        f"no role of yours has the {ability!r} admin ability; an admin can grant it in the policy "
        f"(a role with admin: [{ability}])"
    )


def viewer_reveal(context: GatewayContext, who: Caller, service: str) -> frozenset[str]:
    """The redaction classes the caller's own roles reveal on `service`: what an observer of someone
    else's session may see of values that session's owner had revealed."""
    if context.policy is None:
        return frozenset()
    return frozenset().union(*(r.reveal for r in context.policy.roles_of(who.name) if r.covers(service)))


def observer(context: GatewayContext, who: Caller) -> Observer:
    """Whether the caller may watch (and end) other users' sessions on a service: the policy's
    `observe:`, or without a policy, the admins."""
    policy = context.policy
    if policy is None:
        return lambda _: who.role == "admin"
    return lambda service: policy.observes(who.name, service)


def _grant(free: list[Role], granted: Role | None, approved: AccessRequest | None) -> Grant:
    usable = free + ([granted] if granted is not None else [])
    longest = [role.max_session for role in free]
    if granted is not None and approved is not None and approved.granted_until is not None:
        longest.append(min(granted.max_session, approved.granted_until - time.time()))
    return Grant(
        probes=frozenset().union(*(role.probes for role in usable)),
        max_session=min(LONGEST_SESSION, max(longest)),
        reveal=tuple(sorted(set().union(*(role.reveal for role in usable)))),
        grant_id=approved.id if granted is not None and approved is not None else None,
    )


def _roles(context: GatewayContext, who: Caller, service: str, action: str) -> list[Role]:
    assert context.policy is not None
    roles = [role for role in context.policy.roles_of(who.name) if role.covers(service)]
    if not roles:
        raise Forbidden(f"no role of yours reaches service {service!r}; ask an admin for a role in the policy", action)
    return roles


def _live(approved: AccessRequest | None) -> bool:
    return (
        approved is not None
        and approved.state == APPROVED
        and approved.granted_until is not None
        and approved.granted_until > time.time()
    )


def check_session(context: GatewayContext, who: Caller, service: str, ttl: float) -> Grant:
    """The grant a new session on `service` would have (free roles, else an approved grant), or a
    recorded 403."""
    if context.policy is None:
        return OPEN  # the session's own checks (ttl of at most 1h) are all there is
    roles = _roles(context, who, service, "session.open")
    free = [role for role in roles if role.approval is None]
    gated = [role for role in roles if role.approval is not None]
    approved = None
    if gated and not free:  # a grant is only needed, and only tied to the session, when nothing else reaches
        with context.transaction() as db:
            approved = active_grant(db, who, [role.name for role in gated], service)
    granted = next((role for role in gated if approved is not None and role.name == approved.role), None)
    if not free and granted is None:
        raise Forbidden(
            f"your roles ({', '.join(r.name for r in gated)}) need an approval for service {service!r}: "
            f"keyhole access request --role {gated[0].name} --service {service} --reason TEXT",
            "session.open",
        )
    grant = _grant(free, granted, approved)
    if ttl > grant.max_session:
        raise Forbidden(
            f"your roles allow sessions of at most {format_duration(grant.max_session)} on {service!r}; "
            "ask for a shorter --ttl",
            "session.open",
        )
    return grant


def grant_under(policy: Policy, user: str, service: str, approved: AccessRequest | None) -> Grant | None:
    """What a session of `user` on `service` allows under `policy`: the free roles, plus the role of
    the grant it was opened under while that grant lasts (never another grant the user holds
    meanwhile); None when nothing is left."""
    roles = [role for role in policy.roles_of(user) if role.covers(service)]
    free = [role for role in roles if role.approval is None]
    granted = None
    if _live(approved) and approved is not None:
        granted = next((r for r in roles if r.name == approved.role and r.approval is not None), None)
    if not free and granted is None:
        return None
    return _grant(free, granted, approved)


def session_grant(context: GatewayContext, who: Caller, service: str, grant_id: str | None) -> Grant:
    """What an open session allows now, or a recorded 403."""
    if context.policy is None:
        return OPEN
    _roles(context, who, service, "probe.set")
    approved = None
    if grant_id is not None:
        with context.transaction() as db:
            approved = db.get(AccessRequest, grant_id)
    grant = grant_under(context.policy, who.name, service, approved)
    if grant is None:
        raise Forbidden(f"the grant this session was opened under has ended on {service!r}", "probe.set")
    return grant


def check_probe(context: GatewayContext, who: Caller, service: str, grant_id: str | None, kind: str) -> Grant:
    grant = session_grant(context, who, service, grant_id)
    if kind in KINDS and kind not in grant.probes:  # an unknown kind is the spec validator's to explain
        allowed = ", ".join(sorted(grant.probes)) or "none"
        raise Forbidden(f"your roles do not grant {kind} probes on {service!r} (granted: {allowed})", "probe.set")
    return grant


def still_in_force(context: GatewayContext, checked: Policy | None) -> None:
    """Inside the audited transaction of an action checked against `checked`: a policy applied since
    (they are put in force under the same lock) would not have been asked, so the action waits for a retry."""
    if context.policy is not checked:
        raise ApiError(409, "the policy changed while this was being checked; try again")


def grant_still_live(db: Session, grant_id: str | None) -> bool:
    """Inside the audited transaction that opens a session: its grant was not revoked meanwhile."""
    return grant_id is None or _live(db.get(AccessRequest, grant_id))
