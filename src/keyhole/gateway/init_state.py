"""`keyhole gateway init`: a new gateway state, all or nothing."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from keyhole.gateway.agents.authority import create_ca, issue_server
from keyhole.gateway.errors import GatewayError, StateExists
from keyhole.gateway.identity.passwords import new_password, password_problem
from keyhole.gateway.identity.users import add_user
from keyhole.gateway.storage.database import migrate, open_engine, session_factory
from keyhole.gateway.storage.signing_key import new_signing_key_pem
from keyhole.gateway.storage.state_paths import StatePaths, write_public, write_secret

DEFAULT_HOSTS = ["localhost", "127.0.0.1", "::1"]


@dataclass(frozen=True)
class InitResult:
    paths: StatePaths
    admin_password: str | None  # set only when generated, so it can be shown once


def server_hosts(extra: list[str]) -> list[str]:
    hosts = [*DEFAULT_HOSTS, socket.gethostname(), *extra]
    return list(dict.fromkeys(h for h in hosts if h))


def init_state(root: Path, admin_password: str | None, extra_hosts: list[str]) -> InitResult:
    """Create the state in `root`, which must not exist or be empty. On any failure, whatever this
    call created is removed again, so a second attempt starts clean."""
    if admin_password is not None and (problem := password_problem(admin_password)):
        raise GatewayError(f"KEYHOLE_ADMIN_PASSWORD is refused: {problem}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise StateExists(f"{root} already exists and is not empty; nothing was changed (use a new directory)")
    created_root = not root.exists()
    paths = StatePaths(root)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        now = dt.datetime.now(dt.UTC)
        ca = create_ca(now)
        server = issue_server(ca, server_hosts(extra_hosts), now)
        write_public(paths.ca_cert, ca.cert_pem)
        write_secret(paths.ca_key, ca.key_pem)
        write_public(paths.server_cert, server.cert_pem)
        write_secret(paths.server_key, server.key_pem)
        write_secret(paths.signing_key, new_signing_key_pem())
        write_secret(paths.token_key, secrets.token_bytes(32))
        generated = admin_password is None
        password = admin_password if admin_password is not None else new_password()
        # The database file gets the same owner-only mode as the keys: it holds password hashes.
        write_secret(paths.database, b"")
        engine = open_engine(paths.database)
        try:
            migrate(engine)
            with session_factory(engine)() as db, db.begin():
                add_user(db, "admin", password, "admin")
        finally:
            engine.dispose()
    except BaseException as exc:
        _undo(root, created_root)
        if isinstance(exc, OSError):
            raise GatewayError(
                f"cannot create the gateway state in {root}: {exc.strerror or exc}; nothing was left behind"
            ) from None
        raise
    return InitResult(paths, password if generated else None)


def _undo(root: Path, created_root: bool) -> None:
    if root.is_dir():
        if created_root:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for path in root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
