"""Just-in-time access: a user asks for a role that needs approval, on one service, for a while;
enough distinct approvers holding the roles the policy names say yes (nobody approves their own
request); the grant then lasts its time. Revoking it, or its end, ends the sessions opened under it.
Pending requests expire after an hour."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keyhole.gateway.access.policy import Policy
from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.identity.tokens import Caller
from keyhole.gateway.sessions.debug_sessions import ACCESS_REVOKED, end_session
from keyhole.gateway.storage.models import AccessApproval, AccessRequest, DebugSession, User

PENDING_FOR = 3600.0
DEFAULT_GRANT = 30 * 60.0
PENDING, APPROVED, DENIED, EXPIRED, REVOKED = "pending", "approved", "denied", "expired", "revoked"


@dataclass(frozen=True)
class Decision:
    request: AccessRequest
    approvals: int
    needed: int


def _policy(policy: Policy | None) -> Policy:
    if policy is None:
        raise ApiError(409, "this gateway has no policy, so no role needs approval: open a session directly")
    return policy


def create(
    db: Session, policy: Policy | None, who: Caller, *, role: str, service: str, reason: str, ttl: float | None
) -> AccessRequest:
    """A pending request; `ttl` None means 30 minutes, or the role's longest session if shorter."""
    rules = _policy(policy)
    held = rules.roles_of(who.name)
    wanted = next((r for r in held if r.name == role), None)
    if wanted is None:
        names = ", ".join(r.name for r in held) or "none"
        raise Forbidden(f"you do not hold role {role!r} (yours: {names}); ask an admin for it in the policy")
    if wanted.approval is None:
        raise ApiError(409, f"role {role!r} needs no approval: open a session directly")
    if not wanted.covers(service):
        raise Forbidden(f"role {role!r} does not reach service {service!r}")
    if not reason.strip():
        raise ApiError(400, "an access request needs a reason: say why, e.g. --reason 'INC-42 refunds fail'")
    if ttl is None:
        ttl = min(DEFAULT_GRANT, wanted.max_session)
    if not 60 <= ttl <= wanted.max_session:
        raise ApiError(
            400, f"a grant of role {role!r} lasts from 1m to its longest session, {wanted.max_session / 60:.0f}m"
        )
    now = time.time()
    row = AccessRequest(
        id="acc-" + secrets.token_hex(6),
        user_id=who.user_id,
        role=role,
        service=service,
        reason=reason.strip(),
        ttl=ttl,
        created_at=now,
        expires_at=now + PENDING_FOR,
        state=PENDING,
    )
    db.add(row)
    db.flush()
    return row


def requester(db: Session, row: AccessRequest) -> str:
    user = db.get(User, row.user_id)
    return user.name if user is not None else "?"


def _request(db: Session, request_id: str) -> AccessRequest:
    row = db.get(AccessRequest, request_id)
    if row is None:
        raise ApiError(404, f"no access request {request_id!r}; list them with: keyhole access list")
    return row


def _may_decide(db: Session, rules: Policy, who: Caller, row: AccessRequest) -> int:
    """The count of approvers the request needs, once `who` is found to be one of them."""
    role = rules.roles.get(row.role)
    if role is None or role.approval is None:
        raise ApiError(409, f"role {row.role!r} no longer needs approval (or no longer exists) in the policy")
    if row.user_id == who.user_id:
        raise Forbidden("nobody approves or denies their own request")
    mine = {r.name for r in rules.roles_of(who.name)}
    if not mine & role.approval.roles:
        needed = ", ".join(sorted(role.approval.roles))
        raise Forbidden(f"approving role {row.role!r} needs one of the roles {needed}; you hold none of them")
    return role.approval.count


def _pending(row: AccessRequest) -> None:
    if row.state != PENDING:
        raise ApiError(409, f"access request {row.id} is {row.state}, not pending")
    if row.expires_at <= time.time():
        raise ApiError(409, f"access request {row.id} expired before it was decided; ask again")


def approve(db: Session, policy: Policy | None, who: Caller, request_id: str, reason: str) -> Decision:
    rules = _policy(policy)
    row = _request(db, request_id)
    needed = _may_decide(db, rules, who, row)
    _pending(row)
    if db.get(AccessApproval, (row.id, who.user_id)) is not None:
        raise ApiError(409, f"you already approved {row.id}; it needs {needed} distinct approvers")
    now = time.time()
    db.add(AccessApproval(request_id=row.id, approver_id=who.user_id, at=now, reason=reason.strip()))
    db.flush()
    count = _qualified_approvals(db, rules, row)
    if count >= needed:
        row.state, row.decided_at, row.granted_until = APPROVED, now, now + row.ttl
    return Decision(row, count, needed)


def _qualified_approvals(db: Session, rules: Policy, row: AccessRequest) -> int:
    """Approvals by users who, under the policy in force, still hold a role that may approve."""
    role = rules.roles.get(row.role)
    if role is None or role.approval is None:
        return 0
    approvers = db.scalars(
        select(User.name)
        .join(AccessApproval, AccessApproval.approver_id == User.id)
        .where(AccessApproval.request_id == row.id)
    )
    return sum(1 for name in approvers if {r.name for r in rules.roles_of(name)} & role.approval.roles)


def deny(db: Session, policy: Policy | None, who: Caller, request_id: str) -> AccessRequest:
    rules = _policy(policy)
    row = _request(db, request_id)
    _may_decide(db, rules, who, row)
    _pending(row)
    row.state, row.decided_at = DENIED, time.time()
    return row


def revoke(
    db: Session, policy: Policy | None, who: Caller, request_id: str, *, overseer: bool
) -> tuple[AccessRequest, list[DebugSession]]:
    """The requester, an approver or an overseer (the policy ability) ends a grant (or withdraws a
    pending request); the sessions opened under it end too."""
    row = _request(db, request_id)
    if row.user_id != who.user_id and not overseer:
        _may_decide(db, _policy(policy), who, row)
    if row.state not in (PENDING, APPROVED):
        raise ApiError(409, f"access request {row.id} is {row.state}: nothing to revoke")
    row.state, row.decided_at = REVOKED, time.time()
    return row, end_sessions_of(db, row.id, ACCESS_REVOKED)


def end_sessions_of(db: Session, grant_id: str, reason: str) -> list[DebugSession]:
    ended = []
    for session in db.scalars(
        select(DebugSession).where(DebugSession.grant_id == grant_id, DebugSession.ended_at.is_(None))
    ):
        if end_session(db, session, reason):
            ended.append(session)
    return ended


def active_grant(db: Session, who: Caller, roles: list[str], service: str) -> AccessRequest | None:
    """An approved, unexpired grant of one of these roles on this service, the longest-lasting first."""
    return db.scalar(
        select(AccessRequest)
        .where(
            AccessRequest.user_id == who.user_id,
            AccessRequest.role.in_(roles),
            AccessRequest.service == service,
            AccessRequest.state == APPROVED,
            AccessRequest.granted_until > time.time(),
        )
        .order_by(AccessRequest.granted_until.desc())
        .limit(1)
    )


def expire_due(db: Session, now: float) -> list[AccessRequest]:
    """Pending requests past their hour, and grants past their time: both end (the sessions of a grant
    end at its time anyway, as a session never outlasts its grant)."""
    due = list(
        db.scalars(
            select(AccessRequest).where(
                ((AccessRequest.state == PENDING) & (AccessRequest.expires_at <= now))
                | ((AccessRequest.state == APPROVED) & (AccessRequest.granted_until <= now))
            )
        )
    )
    if due:
        db.execute(
            update(AccessRequest)
            .where(AccessRequest.id.in_([r.id for r in due]))
            .values(state=EXPIRED, decided_at=now)
            .execution_options(synchronize_session=False)
        )
    return due


def listing(
    db: Session, policy: Policy | None, who: Caller, *, pending_only: bool, sees_all: bool
) -> list[tuple[AccessRequest, str, int]]:
    """Requests the caller may see, with the requester's name and approval count: their own, those
    they may decide, and all of them for readers of the audit log (`sees_all`)."""
    query = select(AccessRequest).order_by(AccessRequest.created_at.desc()).limit(500)
    if pending_only:
        query = query.where(AccessRequest.state == PENDING, AccessRequest.expires_at > time.time())
    names = {u.id: u.name for u in db.scalars(select(User))}
    mine = {r.name for r in policy.roles_of(who.name)} if policy is not None else set()
    out = []
    for row in db.scalars(query):
        role = policy.roles.get(row.role) if policy is not None else None
        may_decide = role is not None and role.approval is not None and bool(mine & role.approval.roles)
        if row.user_id == who.user_id or may_decide or sees_all:
            count = _qualified_approvals(db, policy, row) if policy is not None else 0
            out.append((row, names.get(row.user_id, "?"), count))
    return out
