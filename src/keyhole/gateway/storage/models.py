"""The gateway's tables. Times are UNIX seconds (UTC) so comparisons need no time-zone handling."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)


class Login(Base):
    """One `keyhole login`: the refresh tokens it rotates through and the access tokens they mint
    all end when it is revoked (logout, or a refresh token used twice) or expires."""

    __tablename__ = "logins"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class RefreshToken(Base):
    """Stored as a SHA-256 digest: the database never holds a usable token."""

    __tablename__ = "refresh_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    login_id: Mapped[str] = mapped_column(ForeignKey("logins.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class EnrollToken(Base):
    """A single-use enrollment token, stored as a SHA-256 digest."""

    __tablename__ = "enroll_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    service: Mapped[str] = mapped_column(String(64))
    labels: Mapped[str] = mapped_column(Text)  # JSON object
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    credential_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AgentCredential(Base):
    """What one enrollment produced: the identity in the agent's client certificates (their common
    name), bound to one service. Processes forked from an enrolled one share it."""

    __tablename__ = "agent_credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    labels: Mapped[str] = mapped_column(Text)
    enrolled_at: Mapped[float] = mapped_column(Float)
    cert_expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Instance(Base):
    """One agent process, as its hello described it."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("agent_credentials.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    python: Mapped[str] = mapped_column(String(32))
    keyhole: Mapped[str] = mapped_column(String(32))
    labels: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    dropped: Mapped[int] = mapped_column(Integer, default=0)


class DebugSession(Base):
    """A time-boxed debug session on one service, owned by the user who opened it."""

    __tablename__ = "debug_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    grant_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # the approval it needed


class ProbeRecord(Base):
    """One probe set in a session, with the signed command the agents receive."""

    __tablename__ = "probes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("debug_sessions.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[str] = mapped_column(Text)  # JSON, the wire form
    instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    payload: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    removed_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)


class ProbeStatus(Base):
    """Where one probe stands in one instance, as that instance last reported."""

    __tablename__ = "probe_status"

    probe_id: Mapped[str] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class EventRecord(Base):
    """A data event of a live session. Deleted with its session's end (rule 5)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("debug_sessions.id", ondelete="CASCADE"), index=True)
    probe_id: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[float] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """One audit log entry: its canonical JSON (RFC 8785) is a leaf of the log's Merkle tree."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class AuditNode(Base):
    """The hash of a complete subtree: level 0 holds leaf hashes; node (l, i) covers the 2**l leaves
    from i * 2**l. Kept so that roots and proofs take log(n) reads, not n."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpoint(Base):
    """A signed checkpoint of the log (C2SP signed note): its size and root, signed by the gateway."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text)


class AccessRequest(Base):
    """A request for a role that needs approval, on one service; once approved, a time-boxed grant."""

    __tablename__ = "access_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    ttl: Mapped[float] = mapped_column(Float)  # how long the grant lasts once approved
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)  # while pending
    state: Mapped[str] = mapped_column(String(16), index=True)  # pending, approved, denied, expired, revoked
    decided_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    granted_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class AccessApproval(Base):
    __tablename__ = "access_approvals"

    request_id: Mapped[str] = mapped_column(ForeignKey("access_requests.id", ondelete="CASCADE"), primary_key=True)
    approver_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
