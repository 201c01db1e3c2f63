"""Where a gateway keeps its state inside its data directory, and how secret files are written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from keyhole.gateway.errors import StateMissing
from keyhole.verifier import gateway_state


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / gateway_state.DATABASE

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def signing_key(self) -> Path:
        return self.root / gateway_state.SIGNING_KEY

    @property
    def token_key(self) -> Path:
        return self.root / "token.key"

    def all_files(self) -> list[Path]:
        return [
            self.database,
            self.ca_cert,
            self.ca_key,
            self.server_cert,
            self.server_key,
            self.signing_key,
            self.token_key,
        ]

    def require(self) -> None:
        """Fail with the fix when the directory is not a complete gateway state."""
        missing = [p.name for p in self.all_files() if not p.is_file()]
        if missing:
            raise StateMissing(
                f"{self.root} is not a gateway state (missing {', '.join(missing)}); "
                f"create one with: keyhole gateway init --data {self.root}"
            )


def write_secret(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only; it is never there with wider permissions, even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.fchmod(fd, 0o644)  # whatever the umask: certificates are meant to be handed out
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
