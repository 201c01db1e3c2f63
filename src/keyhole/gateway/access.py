"""What a caller may do, under the policy in force: the grant a user's roles add up to for a service,
and refusals that are recorded before they are answered.

Without a policy (`keyhole gateway serve` with no policy file) the gateway keeps its first rules: any
engineer may debug any service, nothing is revealed, and admins administer. With one, it is deny by
default: a session needs a role that reaches the service, a probe kind its roles grant, and no longer
than their longest session.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sqlalchemy.orm import Session

from keyhole.gateway.access_requests import APPROVED, active_grant
from keyhole.gateway.api_errors import ApiError
from keyhole.gateway.audit_log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.models import AccessRequest
from keyhole.gateway.policy import LONGEST_SESSION, Policy, PolicyError, Role, parse_policy
from keyhole.gateway.sessions import MAX_TTL
from keyhole.gateway.tokens import Caller
from keyhole.protocol.durations import format_duration
from keyhole.protocol.probe_spec import KINDS

_log = logging.getLogger("keyhole.gateway")


@dataclass(frozen=True)
class Grant:
    """What a user may do in a session on one service."""

    probes: frozenset[str]
    max_session: float
    reveal: tuple[str, ...]
    grant_id: str | None = None  # the approved access request a session under this grant depends on


OPEN = Grant(probes=frozenset(KINDS), max_session=MAX_TTL, reveal=())


def refuse(context: GatewayContext, who: Caller, action: str, reason: str) -> NoReturn:
    """A 403 with its reason, recorded first in a transaction of its own (the refused action's own
    transaction, if any, rolls back)."""
    with context.audited() as db:
        append(db, f"user:{who.name}", "access.denied", refused=action, reason=reason)
    raise ApiError(403, reason)


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
        refuse(
            context, who, action, f"no role of yours reaches service {service!r}; ask an admin for a role in the policy"
        )
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
        refuse(
            context,
            who,
            "session.open",
            f"your roles ({', '.join(r.name for r in gated)}) need an approval for service {service!r}: "
            f"keyhole access request --role {gated[0].name} --service {service} --reason TEXT",
        )
    grant = _grant(free, granted, approved)
    if ttl > grant.max_session:
        refuse(
            context,
            who,
            "session.open",
            f"your roles allow sessions of at most {format_duration(grant.max_session)} on {service!r}; "
            "ask for a shorter --ttl",
        )
    return grant


def session_grant(context: GatewayContext, who: Caller, service: str, grant_id: str | None) -> Grant:
    """What an open session allows now: the free roles, plus the role of the grant it was opened
    under while that grant lasts. Never another grant the user holds meanwhile."""
    if context.policy is None:
        return OPEN
    roles = _roles(context, who, service, "probe.set")
    free = [role for role in roles if role.approval is None]
    approved = None
    if grant_id is not None:
        with context.transaction() as db:
            approved = db.get(AccessRequest, grant_id)
    granted = None
    if _live(approved) and approved is not None:
        granted = next((r for r in roles if r.name == approved.role and r.approval is not None), None)
    if not free and granted is None:
        refuse(context, who, "probe.set", f"the grant this session was opened under has ended on {service!r}")
    return _grant(free, granted, approved)


def check_probe(context: GatewayContext, who: Caller, service: str, grant_id: str | None, kind: str) -> Grant:
    grant = session_grant(context, who, service, grant_id)
    if kind in KINDS and kind not in grant.probes:  # an unknown kind is the spec validator's to explain
        allowed = ", ".join(sorted(grant.probes)) or "none"
        refuse(context, who, "probe.set", f"your roles do not grant {kind} probes on {service!r} (granted: {allowed})")
    return grant


def grant_still_live(db: Session, grant_id: str | None) -> bool:
    """Inside the audited transaction that opens a session: its grant was not revoked meanwhile."""
    return grant_id is None or _live(db.get(AccessRequest, grant_id))


# --- loading the policy ---------------------------------------------------------------------------------


def load_policy_file(path: Path) -> tuple[Policy, str]:
    """The policy in the file and the SHA-256 of its text, or GatewayError naming the file, the line
    and the reason."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise GatewayError(f"cannot read the policy {path}: {reason}") from None
    try:
        policy = parse_policy(text)
    except PolicyError as exc:
        raise GatewayError(f"the policy {path} is refused, {exc}") from None
    return policy, hashlib.sha256(text.encode()).hexdigest()


def apply_policy_file(context: GatewayContext, path: Path, by: str) -> None:
    """Load, record and put in force; on any error the policy in force stays and the error is raised."""
    policy, digest = load_policy_file(path)
    with context.audited() as db:
        append(db, by, "policy.apply", file=str(path), sha256=digest, roles=sorted(policy.roles))
    context.policy = policy
    _log.info("policy %s in force (%d roles, sha256 %s)", path, len(policy.roles), digest[:12])
