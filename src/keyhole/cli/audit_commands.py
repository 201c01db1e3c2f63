"""`keyhole audit`: checking the gateway's tamper-evident audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyhole.cli.errors import CliError

audit_app = typer.Typer(help="The gateway's tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    data: Annotated[Path, typer.Option("--data", help="The gateway's state directory.", show_default=False)] = Path(),
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="A checkpoint kept elsewhere (keyhole audit checkpoint > FILE).", show_default=False
        ),
    ] = None,
) -> None:
    """Recompute the log's Merkle tree from its entries and check it against every signed checkpoint,
    and against a checkpoint kept elsewhere; on tampering, name the first bad entry and exit 1."""
    from keyhole.gateway.audit_verify import Tampered, verify_state
    from keyhole.gateway.errors import GatewayError
    from keyhole.gateway.state_paths import StatePaths

    if data == Path():
        raise CliError("missing --data DIR (the gateway's state directory)")
    kept = None
    if checkpoint is not None:
        try:
            kept = checkpoint.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise CliError(f"cannot read the checkpoint {checkpoint}: {reason}") from None
    try:
        verified = verify_state(StatePaths(data), kept)
    except Tampered as exc:
        raise CliError(f"the audit log does NOT verify: {exc}", exit_code=1) from None
    except GatewayError as exc:
        raise CliError(str(exc), exit_code=1) from None
    line = f"audit log verified: {verified.entries} entries, {verified.checkpoints} signed checkpoints"
    if verified.kept is not None:
        line += f", consistent with the checkpoint you kept (size {verified.kept.size})"
    typer.echo(line)
