"""The CLI's stored login: the gateway's address and CA, and the current tokens, in one file that only
its owner can read. `KEYHOLE_CONFIG_DIR` moves it (tests, several gateways)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from keyhole.cli.errors import CliError


def config_dir() -> Path:
    explicit = os.environ.get("KEYHOLE_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "keyhole"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass
class StoredLogin:
    gateway: str
    ca_pem: str
    user: str
    role: str
    access_token: str
    access_expires_at: float
    refresh_token: str
    login_expires_at: float


def write_private_json(path: Path, data: object) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    # Created 0600 from the start, then renamed over the old file: never readable by others, never half-written.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(temporary, path)
    return path


def save(login: StoredLogin) -> Path:
    return write_private_json(credentials_path(), asdict(login))


def load() -> StoredLogin:
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
        return StoredLogin(**data)
    except FileNotFoundError:
        raise CliError("not logged in; run: keyhole login --gateway URL --ca CA.pem --user NAME") from None
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"the stored login in {path} is unreadable ({type(exc).__name__}); log in again") from None


def forget() -> bool:
    path = credentials_path()
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
