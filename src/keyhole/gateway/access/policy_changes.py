"""Putting a policy in force: from its file when the gateway starts and on SIGHUP, or from
`keyhole policy apply` through the API, which also writes the file so that a restart keeps it.

A policy that does not validate changes nothing. One that does is recorded first, and what it no
longer allows is withdrawn in the same transaction: a session whose user no role of the new policy
lets onto its service ends, and a probe of a kind, or revealing a class, that the session's new grant
lacks is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyhole.gateway.access.permissions import grant_under
from keyhole.gateway.access.policy import Policy, PolicyError, parse_policy
from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError, GatewayError
from keyhole.gateway.sessions.debug_sessions import POLICY_CHANGED, end_session
from keyhole.gateway.sessions.probe_commands import remove_probe
from keyhole.gateway.storage.models import AccessRequest, DebugSession, ProbeRecord, User

_log = logging.getLogger("keyhole.gateway")


@dataclass
class Applied:
    sha256: str
    roles: int
    sessions_ended: list[str] = field(default_factory=list)
    probes_removed: list[str] = field(default_factory=list)
    services: set[str] = field(default_factory=set)  # whose probe sets changed


def default_policy_path(context: GatewayContext) -> Path:
    """Where `keyhole policy apply` keeps a policy when the gateway was started without --policy."""
    return context.paths.root / "policy.yaml"


def read_policy(path: Path) -> tuple[Policy, str]:
    """The policy in the file and its text, or GatewayError naming the file, the line and the reason."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise GatewayError(f"cannot read the policy {path}: {reason}") from None
    try:
        return parse_policy(text), text
    except PolicyError as exc:
        raise GatewayError(f"the policy {path} is refused, {exc}") from None


def _withdrawals(db: Session, policy: Policy, applied: Applied) -> tuple[list[DebugSession], list[ProbeRecord]]:
    names = {user.id: user.name for user in db.scalars(select(User))}
    ending: list[DebugSession] = []
    removing: list[ProbeRecord] = []
    for session in db.scalars(
        select(DebugSession).where(DebugSession.ended_at.is_(None), DebugSession.expires_at > time.time())
    ):
        approved = db.get(AccessRequest, session.grant_id) if session.grant_id is not None else None
        grant = grant_under(policy, names.get(session.user_id, ""), session.service, approved)
        if grant is None:
            ending.append(session)
            applied.services.add(session.service)
            continue
        for probe in db.scalars(
            select(ProbeRecord).where(ProbeRecord.session_id == session.id, ProbeRecord.removed_at.is_(None))
        ):
            reveal = set(json.loads(probe.spec).get("reveal") or ())
            if probe.kind not in grant.probes or not reveal <= set(grant.reveal):
                removing.append(probe)
                applied.services.add(session.service)
    applied.sessions_ended = [s.id for s in ending]
    applied.probes_removed = [p.id for p in removing]
    return ending, removing


def _stage(target: Path, text: str) -> Path:
    """The new text beside the file it replaces, so that the replacement is one atomic rename."""
    staged = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staged, mode)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise ApiError(
            409,
            f"the gateway cannot write its policy file {target}: {exc.strerror or exc}; "
            "edit that file on the gateway's host and send the gateway SIGHUP instead",
        ) from None
    return staged


_applying = threading.Lock()  # one policy change at a time (the API and SIGHUP), file and all


def put_in_force(
    context: GatewayContext, policy: Policy, text: str, *, by: str, source: str, write_to: Path | None = None
) -> Applied:
    """Record the policy, withdraw what it no longer allows and put it in force, all or nothing; then
    (`write_to`) replace the policy file, so that SIGHUP and restarts read what is in force."""
    applied = Applied(sha256=hashlib.sha256(text.encode()).hexdigest(), roles=len(policy.roles))
    with _applying:
        staged = _stage(write_to, text) if write_to is not None else None
        before = context.policy, context.policy_text
        try:
            with context.audited() as db:
                ending, removing = _withdrawals(db, policy, applied)
                append(
                    db,
                    by,
                    "policy.apply",
                    source=source,
                    sha256=applied.sha256,
                    roles=sorted(policy.roles),
                    sessions_ended=applied.sessions_ended,
                    probes_removed=applied.probes_removed,
                )
                for session in ending:
                    end_session(db, session, POLICY_CHANGED)
                for probe in removing:
                    remove_probe(db, probe)
                # Under the log's lock: an action checked against the old policy finds it gone when it
                # gets the lock (`access.still_in_force`), and asks again.
                context.policy, context.policy_text = policy, text
        except BaseException:
            context.policy, context.policy_text = before
            if staged is not None:
                staged.unlink(missing_ok=True)
            raise
        if staged is not None and write_to is not None:
            _replace(staged, write_to)
    for service in applied.services:
        context.probe_sets.bump(service)
    for session_id in applied.sessions_ended:
        context.session_events.bump(session_id)
    _log.info(
        "policy from %s in force (%d roles, sha256 %s); %d sessions ended, %d probes removed",
        source,
        applied.roles,
        applied.sha256[:12],
        len(applied.sessions_ended),
        len(applied.probes_removed),
    )
    return applied


def _replace(staged: Path, target: Path) -> None:
    """After the commit: the policy is in force and recorded whatever happens here, so a failure is
    said loudly rather than undone."""
    try:
        os.replace(staged, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        _log.error(
            "the policy in force could not be written to %s (%s): a restart would read the old file",
            target,
            exc.strerror or exc,
        )


def apply_policy_file(context: GatewayContext, path: Path, by: str) -> Applied:
    """At start and on SIGHUP; on any error the policy in force stays and the error is raised."""
    policy, text = read_policy(path)
    return put_in_force(context, policy, text, by=by, source=str(path))
