"""What a running gateway holds open: its state paths, database and keys, and what its two
listeners share in memory (who is connected, the long-polls to wake)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from keyhole.gateway.access.policy import Policy
from keyhole.gateway.agents.authority import Issued, load_ca
from keyhole.gateway.agents.connections import Connections
from keyhole.gateway.agents.notifier import Notifier
from keyhole.gateway.agents.probe_set_answers import ProbeSetAnswers
from keyhole.gateway.audit.log import APPENDED
from keyhole.gateway.audit.webhook import Webhook
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.sessions.probe_commands import LiveProbe, live_probes
from keyhole.gateway.storage.database import migrate, open_engine, session_factory
from keyhole.gateway.storage.state_paths import StatePaths
from keyhole.verifier.keys import load_signing_key


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
    ca: Issued
    # Set by `serve`: where agents connect after enrolling, and how long their certificates last.
    agent_port: int = 0
    agent_cert_ttl: float = 12 * 3600.0
    probe_sets: Notifier = field(default_factory=Notifier)  # keyed by service
    session_events: Notifier = field(default_factory=Notifier)  # keyed by session id
    connections: Connections = field(default_factory=Connections)
    # instance id -> (credential that owns it, its service, monotonic time it was last checked)
    known_instances: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    # The policy in force (None: no policy file, the gateway's first rules) and the file it came from.
    policy: Policy | None = None
    policy_path: Path | None = None
    policy_text: str = ""  # the text of the policy in force, as `keyhole policy show` prints it
    webhook: Webhook | None = None  # set by `serve --webhook`
    # Revoked since the gateway started; the cache above must not vouch for them even for a moment.
    revoked_credentials: set[str] = field(default_factory=set)
    probe_set_answers: ProbeSetAnswers = field(init=False)
    _audit_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Uploads stored at once. More threads do not store faster (SQLite has one writer), they only take
    # the interpreter lock from the event loop in turn, and a new probe's answers to the polls wait.
    ingest_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    def __post_init__(self) -> None:
        self.probe_set_answers = ProbeSetAnswers(self.probe_sets, self._live_probes)

    def _live_probes(self, service: str) -> list[LiveProbe]:
        with self.transaction() as db:
            return live_probes(db, service, time.time())

    @classmethod
    def open(cls, paths: StatePaths) -> GatewayContext:
        paths.require()
        engine = open_engine(paths.database)
        try:
            token_key = paths.token_key.read_bytes()
            signing_key = load_signing_key(paths.signing_key)
            ca = load_ca(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())
            migrate(engine)  # a newer keyhole on an older state upgrades it in place
        except (OSError, ValueError, SQLAlchemyError) as exc:
            engine.dispose()
            raise GatewayError(f"the gateway state in {paths.root} is damaged or unreadable: {_reason(exc)}") from None
        if len(token_key) < 32:
            engine.dispose()
            raise GatewayError(f"{paths.token_key} is damaged (shorter than 32 bytes)")
        return cls(paths, engine, session_factory(engine), token_key, signing_key, ca)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as db, db.begin():
            yield db

    @contextmanager
    def audited(self) -> Iterator[Session]:
        """A transaction that appends to the audit log (rule 3: the entry commits with the action, or
        neither does). Audited transactions run one at a time and hold SQLite's write lock from their
        first statement, so the log's end they read cannot change before they commit."""
        with self._audit_lock, self.sessions() as db:
            with db.begin():
                db.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield db
            committed: list[tuple[str, bytes]] = db.info.pop(APPENDED, [])
        if committed and self.webhook is not None:
            self.webhook.announce(committed)  # only what committed: a refused action announces nothing

    def close(self) -> None:
        self.engine.dispose()
