"""What a running gateway holds open: its state paths, database and keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from keyhole.gateway.database import migrate, open_engine, session_factory
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.signing_key import load_signing_key
from keyhole.gateway.state_paths import StatePaths


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or ''} {exc.strerror or type(exc).__name__}".strip()
    if isinstance(exc, SQLAlchemyError):
        return f"database error ({type(exc).__name__})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class GatewayContext:
    paths: StatePaths
    engine: Engine
    sessions: sessionmaker[Session]
    token_key: bytes
    signing_key: Ed25519PrivateKey

    @classmethod
    def open(cls, paths: StatePaths) -> GatewayContext:
        paths.require()
        engine = open_engine(paths.database)
        try:
            token_key = paths.token_key.read_bytes()
            signing_key = load_signing_key(paths.signing_key)
            migrate(engine)  # a newer keyhole on an older state upgrades it in place
        except (OSError, ValueError, SQLAlchemyError) as exc:
            engine.dispose()
            raise GatewayError(f"the gateway state in {paths.root} is damaged or unreadable: {_reason(exc)}") from None
        if len(token_key) < 32:
            engine.dispose()
            raise GatewayError(f"{paths.token_key} is damaged (shorter than 32 bytes)")
        return cls(paths, engine, session_factory(engine), token_key, signing_key)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as db, db.begin():
            yield db

    def close(self) -> None:
        self.engine.dispose()
