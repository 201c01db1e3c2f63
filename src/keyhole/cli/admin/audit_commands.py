"""`keyhole audit`: checking the gateway's tamper-evident audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from keyhole.cli.errors import CliError

if TYPE_CHECKING:
    from keyhole.verifier.log_check import Verified

audit_app = typer.Typer(help="The gateway's tamper-evident audit log (admin).", no_args_is_help=True)


@audit_app.command("verify")
def verify(
    data: Annotated[
        Path,
        typer.Option("--data", help="The gateway's state directory (else: through the API).", show_default=False),
    ] = Path(),
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="A checkpoint kept elsewhere (keyhole audit checkpoint > FILE).", show_default=False
        ),
    ] = None,
) -> None:
    """Recompute the log's Merkle tree from its entries and check it against every signed checkpoint,
    and against a checkpoint kept elsewhere; on tampering, name the first bad entry and exit 1.

    With --data, the state is read directly (on the gateway's host). Without, the log is read through
    the API (the audit ability) and held to a checkpoint the gateway signs first, and to FILE.
    """
    from keyhole.verifier.errors import Tampered, VerifierError
    from keyhole.verifier.gateway_state import verify_state

    kept = None
    if checkpoint is not None:
        try:
            kept = checkpoint.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise CliError(f"cannot read the checkpoint {checkpoint}: {reason}") from None
    try:
        if data == Path():
            verified, origin = _verify_served(kept)
        else:
            verified, origin = verify_state(data, kept), ""
    except Tampered as exc:
        raise CliError(f"the audit log does NOT verify: {exc}", exit_code=1) from None
    except VerifierError as exc:
        raise CliError(str(exc), exit_code=1) from None
    if origin:
        line = f"audit log {origin} verified through the API: {verified.entries} entries, against its fresh checkpoint"
    else:
        line = f"audit log verified: {verified.entries} entries, {verified.checkpoints} signed checkpoints"
    if verified.kept is not None:
        line += f", consistent with the checkpoint you kept (size {verified.kept.size})"
    typer.echo(line)


def _verify_served(kept: str | None) -> tuple[Verified, str]:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from keyhole.cli.gateway_client import api
    from keyhole.verifier.checkpoints import origin_for
    from keyhole.verifier.log_check import verify_served

    latest = api("POST", "/v1/audit/checkpoint")  # first: every entry it covers is then served below
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(latest["public_key"], validate=True))
        bodies = (base64.b64decode(entry["body"], validate=True) for entry in _entries(None, None, page_size=5000))
        return verify_served(bodies, key, str(latest["note"]), kept), origin_for(key)
    except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
        raise CliError(
            f"the gateway's answer is not an audit log ({type(exc).__name__}); is it a keyhole gateway?", 1
        ) from None


def _entries(since: str | None, actor: str | None, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry, page by page, oldest first."""
    from urllib.parse import urlencode

    from keyhole.cli.gateway_client import api

    after = -1
    while True:
        query: dict[str, Any] = {"after": after, "limit": page_size}
        if since is not None:
            query["since"] = since
        if actor is not None:
            query["actor"] = actor
        page = api("GET", f"/v1/audit/entries?{urlencode(query)}")
        yield from page["entries"]
        if len(page["entries"]) < page_size:
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
