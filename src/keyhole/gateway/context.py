"""What a running gateway holds open: its state paths, database and keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from keyhole.gateway.database import migrate, open_engine, session_factory
from keyhole.gateway.signing_key import load_signing_key
from keyhole.gateway.state_paths import StatePaths


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
        migrate(engine)  # a newer keyhole on an older state upgrades it in place
        return cls(
            paths=paths,
            engine=engine,
            sessions=session_factory(engine),
            token_key=paths.token_key.read_bytes(),
            signing_key=load_signing_key(paths.signing_key),
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as db, db.begin():
            yield db

    def close(self) -> None:
        self.engine.dispose()
