"""The CLI's current debug session: the one `keyhole session open` made, which probe commands use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from keyhole.cli.credentials import config_dir, write_private_json
from keyhole.cli.errors import CliError


@dataclass(frozen=True)
class CurrentSession:
    gateway: str
    id: str
    service: str
    expires_at: float


def _path() -> Path:
    return config_dir() / "session.json"


def save(session: CurrentSession) -> None:
    write_private_json(_path(), asdict(session))


def load(gateway: str) -> CurrentSession:
    path = _path()
    try:
        session = CurrentSession(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise CliError("no current session; open one: keyhole session open --service NAME --reason TEXT") from None
    except (OSError, ValueError, TypeError):
        raise CliError(f"{path} is unreadable; open a session again: keyhole session open") from None
    if session.gateway != gateway:
        raise CliError("the current session belongs to another gateway; open one here: keyhole session open")
    return session


def forget(session_id: str | None = None) -> None:
    path = _path()
    if session_id is not None:
        try:
            if json.loads(path.read_text()).get("id") != session_id:
                return
        except (OSError, ValueError, AttributeError):
            pass
    path.unlink(missing_ok=True)
