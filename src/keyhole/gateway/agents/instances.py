"""Agent instances: one per process, as its hello described it, kept after it disconnects so that
`keyhole agents` can show when each was last in contact."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from keyhole.gateway.errors import ApiError, AuthError, GatewayError
from keyhole.gateway.storage.models import AgentCredential, Instance

# Last contact is written at most this often per instance: every poll writing would be a hot row.
TOUCH_EVERY = 5.0


@dataclass(frozen=True)
class Hello:
    instance: str
    service: str
    host: str
    pid: int
    python: str
    keyhole: str
    labels: dict[str, str]


def credential(db: Session, credential_id: str) -> AgentCredential:
    row = db.get(AgentCredential, credential_id)
    if row is None or row.revoked_at is not None:
        raise AuthError("this agent's enrollment was revoked or is unknown; enroll it again with a new token")
    return row


def register(db: Session, credential_id: str, hello: Hello) -> Instance:
    cred = credential(db, credential_id)
    if hello.service != cred.service:
        raise GatewayError(f"this agent was enrolled for service {cred.service!r}, not {hello.service!r}")
    now = time.time()
    labels = {**hello.labels, **json.loads(cred.labels)}  # the admin's labels (from the token) win
    row = db.get(Instance, hello.instance)
    if row is not None and row.credential_id != credential_id:
        raise GatewayError("this instance id belongs to another agent; instance ids must be unique")
    if row is None:
        row = Instance(id=hello.instance, credential_id=credential_id, first_seen=now, dropped=0)
        db.add(row)
    row.service, row.host, row.pid = cred.service, hello.host, hello.pid
    row.python, row.keyhole, row.labels, row.last_seen = hello.python, hello.keyhole, json.dumps(labels), now
    return row


def instance_of(db: Session, credential_id: str, instance_id: str) -> Instance:
    """The instance a request names, which must belong to the calling certificate."""
    credential(db, credential_id)
    row = db.get(Instance, instance_id)
    if row is None or row.credential_id != credential_id:
        raise GatewayError("unknown instance: send a hello first")
    return row


def touch(db: Session, row: Instance) -> None:
    now = time.time()
    if now - row.last_seen >= TOUCH_EVERY:
        row.last_seen = now


@dataclass(frozen=True)
class Revoked:
    credential: str
    service: str
    instances: list[str]  # every process of that enrollment (forked workers share it)


def revoke(db: Session, instance_id: str, now: float) -> Revoked:
    """Revoke the enrollment the instance belongs to: none of its certificates works any more."""
    row = db.get(Instance, instance_id)
    if row is None:
        raise ApiError(404, f"no agent instance {instance_id!r}; see the instances with: keyhole agents")
    cred = db.get(AgentCredential, row.credential_id)
    if cred is None or cred.revoked_at is not None:
        raise ApiError(409, f"the enrollment of agent instance {instance_id!r} is already revoked")
    cred.revoked_at = now
    siblings = db.scalars(select(Instance.id).where(Instance.credential_id == cred.id).order_by(Instance.first_seen))
    return Revoked(cred.id, cred.service, list(siblings))


def revoked_credentials(db: Session) -> set[str]:
    return set(db.scalars(select(AgentCredential.id).where(AgentCredential.revoked_at.is_not(None))))


def add_dropped(db: Session, instance_id: str, count: int) -> None:
    """Count events the agent could not send (its buffer was full); capped, as agents report it. One
    statement: two uploads of the instance may be stored at once."""
    db.execute(
        update(Instance).where(Instance.id == instance_id).values(dropped=func.min(Instance.dropped + count, 2**62))
    )


def all_instances(db: Session) -> list[Instance]:
    return list(db.scalars(select(Instance).order_by(Instance.service, Instance.first_seen)))


def service_instances(db: Session, service: str) -> list[Instance]:
    return list(db.scalars(select(Instance).where(Instance.service == service).order_by(Instance.first_seen)))
