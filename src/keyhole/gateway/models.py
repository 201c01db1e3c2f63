"""The gateway's tables. Times are UNIX seconds (UTC) so comparisons need no time-zone handling."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String
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
