"""`keyhole access`: asking for a role that needs approval, and deciding such requests."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from keyhole.cli.options import duration_option
from keyhole.cli.time_text import left

access_app = typer.Typer(help="Just-in-time access: request a role that needs approval; approve, deny, revoke.")


def _line(item: dict[str, Any]) -> str:
    until = f"  {left(item['granted_until'])}" if item["granted_until"] and item["state"] == "approved" else ""
    return (
        f"{item['id']:<18} {item['state']:<9} {item['user']:<12} {item['role']:<14} {item['service']:<16} "
        f"approvals {item['approvals']}{until}  {item['reason']}"
    )


def _path(request_id: str, step: str) -> str:
    return f"/v1/access/{quote(request_id, safe='')}/{step}"


@access_app.command("request")
def request(
    role: Annotated[str, typer.Option("--role", help="A role of yours that needs approval.", show_default=False)] = "",
    service: Annotated[str, typer.Option("--service", help="The service.", show_default=False)] = "",
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).", show_default=False)] = "",
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            help="How long the grant lasts once approved (default 30m, or the role's longest).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Ask for ROLE on SERVICE; approvers see it in keyhole access list --pending."""
    from keyhole.cli.errors import CliError
    from keyhole.cli.gateway_client import api

    if not role or not service or not reason.strip():
        raise CliError("usage: keyhole access request --role ROLE --service NAME --reason TEXT [--ttl 30m]")
    body: dict[str, Any] = {"role": role, "service": service, "reason": reason}
    if ttl is not None:
        body["ttl"] = duration_option(ttl, "--ttl", minimum=60.0, maximum=24 * 3600.0)
    made = api("POST", "/v1/access", body, ok=(201,))
    typer.echo(f"access request {made['id']}: {role} on {service}, waiting for approval")


@access_app.command("list")
def list_requests(
    pending: Annotated[bool, typer.Option("--pending", help="Only those awaiting a decision.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per request, per line.")] = False,
) -> None:
    """Your requests, those you may decide, and (admins) all of them."""
    from keyhole.cli.gateway_client import api

    found = api("GET", f"/v1/access?pending={'true' if pending else 'false'}")
    for item in found:
        typer.echo(json.dumps(item) if as_json else _line(item))
    if not found and not as_json:
        typer.echo("no access requests" + (" pending" if pending else ""))


@access_app.command("approve")
def approve(
    request_id: Annotated[str, typer.Argument(help="The request's id.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Approve a request (you hold an approver role, and it is not yours)."""
    from keyhole.cli.gateway_client import api

    item = api("POST", _path(request_id, "approve"), {"reason": reason})
    state = "granted" if item["state"] == "approved" else f"approved ({item['approvals']} so far)"
    typer.echo(f"access request {item['id']} {state}: {item['user']} as {item['role']} on {item['service']}")


@access_app.command("deny")
def deny(request_id: Annotated[str, typer.Argument(help="The request's id.", show_default=False)]) -> None:
    """Deny a request."""
    from keyhole.cli.gateway_client import api

    item = api("POST", _path(request_id, "deny"), {"reason": ""})
    typer.echo(f"access request {item['id']} denied")


@access_app.command("revoke")
def revoke(request_id: Annotated[str, typer.Argument(help="The request's id.", show_default=False)]) -> None:
    """End a grant, or withdraw a pending request: the sessions opened under it end now."""
    from keyhole.cli.gateway_client import api

    item = api("POST", _path(request_id, "revoke"))
    typer.echo(f"access request {item['id']} revoked")
