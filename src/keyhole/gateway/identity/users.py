"""Local user accounts. Roles beyond admin and engineer come with the policy file."""

from __future__ import annotations

import re
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyhole.gateway.errors import GatewayError
from keyhole.gateway.identity.passwords import hash_password, password_problem
from keyhole.gateway.storage.models import User

ROLES = ("admin", "engineer")
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class UserError(GatewayError):
    """A user that cannot be created as asked."""


class UserExists(UserError):
    """The name is taken."""


def name_problem(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return (
            f"user name {name!r} is not valid: use 1 to 64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter"
        )
    return None


def find_user(db: Session, name: str) -> User | None:
    return db.scalars(select(User).where(User.name == name)).first()


def add_user(db: Session, name: str, password: str, role: str) -> User:
    problem = name_problem(name) or password_problem(password)
    if role not in ROLES:
        problem = problem or f"role {role!r} is not known: use one of {', '.join(ROLES)}"
    if problem:
        raise UserError(problem)
    if find_user(db, name) is not None:
        raise UserExists(f"user {name!r} already exists; pick another name")
    user = User(name=name, password_hash=hash_password(password), role=role, created_at=time.time())
    try:
        with db.begin_nested():  # two admins adding the same name at once: the second gets a clear answer
            db.add(user)
            db.flush()
    except IntegrityError:
        raise UserExists(f"user {name!r} already exists; pick another name") from None
    return user
