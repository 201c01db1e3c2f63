"""Logging in and out, and refreshing an access token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from keyhole.gateway.api.callers import AnyUser, Gateway
from keyhole.gateway.audit.log import append
from keyhole.gateway.errors import AuthError
from keyhole.gateway.identity.passwords import verify_password
from keyhole.gateway.identity.tokens import Credentials, RefreshReused, open_login, refresh, revoke_login
from keyhole.gateway.identity.users import find_user

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    user: str
    role: str


@router.post("/login", responses={401: {"description": "wrong user name or password"}})
def login(body: LoginRequest, context: Gateway) -> Credentials:
    with context.transaction() as db:
        user = find_user(db, body.user)
    # Outside the audited transaction: hashing takes a while, and audited transactions go one at a time.
    if verify_password(user.password_hash if user else None, body.password) and user is not None:
        with context.audited() as db:
            append(db, f"user:{user.name}", "login")
            return open_login(db, context.token_key, user)
    # The name tried is kept only if such a user exists: people type passwords into name fields. An
    # unknown name is kept as a keyed digest, so repeated tries of one name still show as one.
    tried = (
        user.name
        if user is not None
        else "unknown:"
        + hmac.new(context.token_key, body.user.encode("utf-8", "surrogatepass"), "sha256").hexdigest()[:16]
    )
    with context.audited() as db:
        append(db, "anonymous", "login.failed", user=tried)
    raise AuthError("wrong user name or password")


@router.post("/refresh", responses={401: {"description": "refresh token expired, revoked or reused"}})
def refresh_tokens(body: RefreshRequest, context: Gateway) -> Credentials:
    try:
        with context.audited() as db:
            credentials = refresh(db, context.token_key, body.refresh_token)
            append(db, f"user:{credentials.user}", "token.refresh")
            return credentials
    except RefreshReused as reused:
        with context.audited() as db:
            append(db, "gateway", "login.revoked", login=reused.login_id, reason="refresh token reused")
            revoke_login(db, reused.login_id)
        raise


@router.post("/logout", status_code=204, responses={401: {"description": "missing or invalid token"}})
def logout(who: AnyUser, context: Gateway) -> Response:
    with context.audited() as db:
        append(db, f"user:{who.name}", "logout")
        revoke_login(db, who.login_id)
    return Response(status_code=204)


@router.get("/me", responses={401: {"description": "missing or invalid token"}})
def me(who: AnyUser) -> Me:
    return Me(user=who.name, role=who.role)
