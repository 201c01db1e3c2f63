"""Engineers' credentials: a short-lived access token (a JWT the gateway signs with its own HMAC key)
and an opaque refresh token that rotates on every use. Both belong to one login, which logout
revokes; a refresh token presented twice revokes its login too, as it can only mean a copy leaked."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import jwt
from sqlalchemy import update
from sqlalchemy.orm import Session

from keyhole.gateway.errors import AuthError
from keyhole.gateway.storage.models import Login, RefreshToken, User

ACCESS_TTL = 15 * 60.0
LOGIN_TTL = 12 * 3600.0
_ALGORITHM = "HS256"
_ISSUER = "keyhole-gateway"
_AUDIENCE = "keyhole-api"


class RefreshReused(AuthError):
    """A rotated-out refresh token came back: the caller must revoke its login (outside the failed
    transaction, so that the revocation is kept)."""

    def __init__(self, login_id: str) -> None:
        super().__init__("this refresh token was already used, so its login is revoked; log in again: keyhole login")
        self.login_id = login_id


@dataclass(frozen=True)
class Credentials:
    user: str
    role: str
    access_token: str
    refresh_token: str
    access_expires_at: float
    login_expires_at: float


@dataclass(frozen=True)
class Caller:
    user_id: int
    name: str
    role: str
    login_id: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _access_token(key: bytes, user: User, login: Login, now: float) -> tuple[str, float]:
    expires = min(now + ACCESS_TTL, login.expires_at)
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": user.name,
        "uid": user.id,
        "lid": login.id,
        "iat": int(now),
        "exp": int(expires),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM), expires


def _refresh_token(db: Session, login: Login) -> str:
    token = "khr_" + secrets.token_urlsafe(32)
    db.add(RefreshToken(digest=_digest(token), login_id=login.id, expires_at=login.expires_at, used_at=None))
    return token


def open_login(db: Session, key: bytes, user: User) -> Credentials:
    now = time.time()
    login = Login(id=secrets.token_hex(16), user_id=user.id, created_at=now, expires_at=now + LOGIN_TTL)
    db.add(login)
    access, access_expires = _access_token(key, user, login, now)
    refresh = _refresh_token(db, login)
    return Credentials(user.name, user.role, access, refresh, access_expires, login.expires_at)


def refresh(db: Session, key: bytes, token: str) -> Credentials:
    now = time.time()
    row = db.get(RefreshToken, _digest(token))
    login = db.get(Login, row.login_id) if row is not None else None
    if row is None or login is None or login.revoked_at is not None or login.expires_at <= now:
        raise AuthError("the refresh token is not valid (expired, revoked or unknown); log in again: keyhole login")
    # Claimed in one statement: two requests racing with the same token cannot both see it unused.
    claim = db.execute(
        update(RefreshToken)
        .where(RefreshToken.digest == row.digest, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claim, "rowcount", 0) != 1:
        raise RefreshReused(login.id)
    user = db.get(User, login.user_id)
    if user is None:
        raise AuthError("the user of this login no longer exists")
    access, access_expires = _access_token(key, user, login, now)
    new_refresh = _refresh_token(db, login)
    return Credentials(user.name, user.role, access, new_refresh, access_expires, login.expires_at)


def revoke_login(db: Session, login_id: str) -> None:
    db.execute(update(Login).where(Login.id == login_id, Login.revoked_at.is_(None)).values(revoked_at=time.time()))


def authenticate(db: Session, key: bytes, token: str) -> Caller:
    """The caller behind a bearer access token, or AuthError saying what is wrong with it."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "uid", "lid"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(
            "the access token has expired; refresh it (POST /v1/auth/refresh) or log in again: keyhole login"
        ) from None
    except jwt.InvalidTokenError:
        raise AuthError("the access token is not valid; log in again: keyhole login") from None
    login = db.get(Login, claims["lid"])
    if login is None or login.revoked_at is not None or login.expires_at <= time.time():
        raise AuthError("this login has ended (logged out or expired); log in again: keyhole login")
    user = db.get(User, claims["uid"])
    if user is None or user.name != claims["sub"]:
        raise AuthError("the user of this token no longer exists")
    return Caller(user.id, user.name, user.role, login.id)
