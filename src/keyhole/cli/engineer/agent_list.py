"""`keyhole agents`: the agent instances of the services a user may see, connected or not."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from keyhole.cli.time_text import ago


def _row(agent: dict[str, Any]) -> str:
    state = "revoked" if agent.get("revoked") else "connected" if agent["connected"] else "gone"
    labels = ",".join(f"{k}={v}" for k, v in sorted(agent["labels"].items()))
    dropped = f"  dropped {agent['dropped']}" if agent["dropped"] else ""
    return (
        f"{agent['instance']:<16} {agent['service']:<20} {state:<10} {agent['host']}:{agent['pid']:<8} "
        f"py{agent['python']:<8} last contact {ago(agent['last_seen'])}{dropped}  {labels}".rstrip()
    )


def agents(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per agent instance, per line.")] = False,
) -> None:
    """List agent instances, connected or not, with their last contact."""
    from keyhole.cli.gateway_client import api

    found = api("GET", "/v1/agents")
    if as_json:
        for agent in found:
            typer.echo(json.dumps(agent))
        return
    if not found:
        typer.echo("no agents yet; start one with: keyhole run --gateway URL --service NAME -- COMMAND")
        return
    typer.echo(f"{'INSTANCE':<16} {'SERVICE':<20} {'STATE':<10} HOST:PID")
    for agent in found:
        typer.echo(_row(agent))
