"""`keyhole audit`: checking the gateway's tamper-evident audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from keyhole.cli.errors import CliError

audit_app = typer.Typer(help="The gateway's tamper-evident audit log (admin).", no_args_is_help=True)


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


def _entries(since: str | None, actor: str | None) -> Iterator[dict[str, Any]]:
    """Every entry, page by page, oldest first."""
    from urllib.parse import urlencode

    from keyhole.cli.gateway_client import api

    after = -1
    while True:
        query: dict[str, Any] = {"after": after, "limit": 1000}
        if since is not None:
            query["since"] = since
        if actor is not None:
            query["actor"] = actor
        page = api("GET", f"/v1/audit/entries?{urlencode(query)}")
        yield from page["entries"]
        if len(page["entries"]) < 1000:
            return
        after = page["entries"][-1]["seq"]


@audit_app.command("log")
def log(
    since: Annotated[str | None, typer.Option("--since", help="Only the last D, e.g. 2h.", show_default=False)] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only this actor, e.g. user:alice.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per entry, per line.")] = False,
) -> None:
    """The audit log's entries, oldest first (admin)."""
    for entry in _entries(since, actor):
        if as_json:
            typer.echo(json.dumps({k: v for k, v in entry.items() if k != "body"}))
            continue
        details = " ".join(f"{k}={json.dumps(v)}" for k, v in entry["details"].items())
        typer.echo(f"{entry['seq']:>7} {entry['at']} {entry['actor']:<24} {entry['action']:<20} {details}".rstrip())


@audit_app.command("checkpoint")
def checkpoint() -> None:
    """Print a signed checkpoint of the log as it is now (a C2SP signed note), for an auditor to keep
    elsewhere: keyhole audit checkpoint > FILE, then keyhole audit verify --checkpoint FILE."""
    from keyhole.cli.gateway_client import api

    typer.echo(api("POST", "/v1/audit/checkpoint")["note"], nl=False)


@audit_app.command("export")
def export(
    output_format: Annotated[str, typer.Option("--format", help="Only jsonl for now.")] = "jsonl",
) -> None:
    """Every entry as one JSON line (with the stored canonical form, base64), for a SIEM."""
    if output_format != "jsonl":
        raise CliError(f"unknown --format {output_format!r}; the formats are: jsonl")
    for entry in _entries(None, None):
        typer.echo(json.dumps(entry))
