"""Local accounts, managed by admins."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from keyhole.gateway.access.permissions import abilities
from keyhole.gateway.api.callers import Gateway, UsersAdmin
from keyhole.gateway.audit.log import append
from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.identity.users import ROLES, UserError, UserExists, add_user
from keyhole.gateway.storage.models import User

router = APIRouter(prefix="/v1/users", tags=["users"])


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str = Field(default="engineer", description=f"one of {', '.join(ROLES)}")


class UserOut(BaseModel):
    name: str
    role: str
    created_at: float


@router.post("", status_code=201, responses={400: {"description": "invalid or taken name, weak password"}})
def create_user(body: NewUser, who: UsersAdmin, context: Gateway) -> UserOut:
    # The policy grants by name: making the account a name stands for is granting what the name holds.
    wider = context.policy.abilities_of(body.name) - abilities(context, who) if context.policy else frozenset()
    if wider and "policy" not in abilities(context, who):
        raise Forbidden(
            f"the policy gives {body.name!r} admin abilities you do not hold ({', '.join(sorted(wider))}); "
            "a holder of the 'policy' ability must create this account"
        )
    try:
        with context.audited() as db:
            append(db, f"user:{who.name}", "user.add", name=body.name, role=body.role)
            user = add_user(db, body.name, body.password, body.role)
            return UserOut(name=user.name, role=user.role, created_at=user.created_at)
    except UserError as exc:
        raise ApiError(409 if isinstance(exc, UserExists) else 400, str(exc)) from None


@router.get("")
def list_users(_: UsersAdmin, context: Gateway) -> list[UserOut]:
    with context.transaction() as db:
        users = db.scalars(select(User).order_by(User.name))
        return [UserOut(name=u.name, role=u.role, created_at=u.created_at) for u in users]
