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

from keyhole.gateway.access_requests import active_grant
from keyhole.gateway.api_errors import ApiError
from keyhole.gateway.audit_log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.policy import LONGEST_SESSION, Policy, PolicyError, parse_policy
from keyhole.gateway.tokens import Caller
from keyhole.protocol.durations import format_duration
from keyhole.protocol.probe_spec import KINDS

_log = logging.getLogger("keyhole.gateway")


@dataclass(frozen=True)
class Grant:
    """What a user may do in a session on one service."""

    roles: tuple[str, ...]
    probes: frozenset[str]
    max_session: float
    reveal: tuple[str, ...]
    needs_approval: bool
    grant_id: str | None = None  # the approved access request a session under this grant depends on


OPEN = Grant(roles=(), probes=frozenset(KINDS), max_session=3600.0, reveal=(), needs_approval=False)


def refuse(context: GatewayContext, who: Caller, action: str, reason: str) -> NoReturn:
    """A 403 with its reason, recorded first in a transaction of its own (the refused action's own
    transaction, if any, rolls back)."""
    with context.audited() as db:
        append(db, f"user:{who.name}", "access.denied", refused=action, reason=reason)
    raise ApiError(403, reason)


def grant_for(context: GatewayContext, who: Caller, service: str) -> Grant:
    """The grant of the caller's roles that reach `service`, or a recorded 403."""
    policy = context.policy
    if policy is None:
        return OPEN
    roles = [role for role in policy.roles_of(who.name) if role.covers(service)]
    if not roles:
        refuse(
            context,
            who,
            "session.open",
            f"no role of yours reaches service {service!r}; ask an admin for a role in the policy",
        )
    free = [role for role in roles if role.approval is None]
    gated = [role for role in roles if role.approval is not None]
    approved = None
    if gated:
        with context.transaction() as db:
            approved = active_grant(db, who, [role.name for role in gated], service)
    usable = free + [role for role in gated if approved is not None and role.name == approved.role]
    if not usable:
        return Grant(tuple(r.name for r in gated), frozenset(), 0.0, (), needs_approval=True)
    longest = max(role.max_session for role in usable)
    if approved is not None and approved.granted_until is not None:
        granted = [role for role in usable if role.name == approved.role]
        left = approved.granted_until - time.time()
        longest = max([role.max_session for role in free] + [min(r.max_session, left) for r in granted])
    return Grant(
        roles=tuple(role.name for role in usable),
        probes=frozenset().union(*(role.probes for role in usable)),
        max_session=min(LONGEST_SESSION, longest),
        reveal=tuple(sorted(set().union(*(role.reveal for role in usable)))),
        needs_approval=False,
        grant_id=approved.id if approved is not None else None,
    )


def check_session(context: GatewayContext, who: Caller, service: str, ttl: float) -> Grant:
    if context.policy is None:
        return OPEN  # the session's own checks (ttl of at most 1h) are all there is
    grant = grant_for(context, who, service)
    if grant.needs_approval:
        refuse(
            context,
            who,
            "session.open",
            f"your roles ({', '.join(grant.roles)}) need an approval for service {service!r}: "
            f"keyhole access request --role {grant.roles[0]} --service {service} --reason TEXT",
        )
    if ttl > grant.max_session:
        refuse(
            context,
            who,
            "session.open",
            f"your roles allow sessions of at most {format_duration(grant.max_session)} on {service!r}; "
            "ask for a shorter --ttl",
        )
    return grant


def check_probe(context: GatewayContext, who: Caller, service: str, kind: str) -> Grant:
    grant = grant_for(context, who, service)
    if kind in KINDS and kind not in grant.probes:  # an unknown kind is the spec validator's to explain
        allowed = ", ".join(sorted(grant.probes)) or "none"
        refuse(context, who, "probe.set", f"your roles do not grant {kind} probes on {service!r} (granted: {allowed})")
    return grant


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
