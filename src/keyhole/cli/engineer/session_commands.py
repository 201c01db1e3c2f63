"""`keyhole session open|list|close`: debug sessions, and the CLI's current one."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from keyhole.cli.engineer import current_session
from keyhole.cli.errors import CliError
from keyhole.cli.options import duration_option, id_argument
from keyhole.cli.time_text import ago, left

session_app = typer.Typer(help="Open, list and close debug sessions.", no_args_is_help=True)


@session_app.command("open")
def open_session(
    service: Annotated[str, typer.Option("--service", help="The service to debug.", show_default=False)] = "",
    reason: Annotated[str, typer.Option("--reason", help="Why you are looking (recorded).", show_default=False)] = "",
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long the session lasts (at most 1h, or your roles' longest).")
    ] = "15m",
) -> None:
    """Open a debug session on one service and make it the current one."""
    from keyhole.cli.gateway_client import api, fresh_login

    if not service or not reason.strip():
        raise CliError("usage: keyhole session open --service NAME --reason TEXT [--ttl 15m]")
    # Up to a day here: the gateway holds each user to their roles' longest session.
    seconds = duration_option(ttl, "--ttl", minimum=60.0, maximum=24 * 3600.0)
    opened = api("POST", "/v1/sessions", {"service": service, "reason": reason, "ttl": seconds}, ok=(201,))
    current_session.save(
        current_session.CurrentSession(fresh_login().gateway, opened["id"], opened["service"], opened["expires_at"])
    )
    typer.echo(f"session {opened['id']} open on {opened['service']} ({left(opened['expires_at'])}); it is current")
    if not opened["instances"]:
        typer.echo(f"note: no agent of service {opened['service']!r} is connected now (see keyhole agents)")


def _line(session: dict[str, Any], current: str | None) -> str:
    mark = "*" if session["id"] == current else " "
    when = (
        left(session["expires_at"])
        if session["state"] == "open"
        else f"{session['state']} {ago(session['ended_at'] or session['expires_at'])}"
    )
    return f"{mark} {session['id']:<22} {session['service']:<20} {session['user']:<12} {when:<18} {session['reason']}"


@session_app.command("list")
def list_sessions(
    everyone: Annotated[bool, typer.Option("--all", help="Everyone's sessions (admin).")] = False,
) -> None:
    """Your sessions, newest first; * marks the current one."""
    from keyhole.cli.gateway_client import api, fresh_login

    found = api("GET", f"/v1/sessions?everyone={'true' if everyone else 'false'}")
    try:
        current: str | None = current_session.load(fresh_login().gateway).id
    except CliError:
        current = None
    if not found:
        typer.echo("no sessions; open one: keyhole session open --service NAME --reason TEXT")
    for session in found:
        typer.echo(_line(session, current))


@session_app.command("close")
def close_session(
    session_id: Annotated[str | None, typer.Argument(help="The session (default: the current one).")] = None,
) -> None:
    """Close a session: its probes are removed from every agent and its events deleted."""
    from keyhole.cli.gateway_client import api, fresh_login

    target = id_argument(session_id, "session") if session_id else current_session.load(fresh_login().gateway).id
    closed = api("POST", f"/v1/sessions/{quote(target, safe='')}/close", timeout=30.0)
    current_session.forget(target)
    session = closed["session"]
    typer.echo(f"session {session['id']} is {session['state']}; its probes are removed and its events deleted")
    if closed["holding"]:
        typer.echo(f"warning: {closed['holding']} connected agent(s) have not yet confirmed removing the probes")
    if closed["unreachable"]:
        typer.echo(
            f"note: {closed['unreachable']} agent(s) are not connected; they drop the probes by themselves "
            "when their dead-man grace runs out"
        )
