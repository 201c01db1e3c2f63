"""`keyhole policy`: show the policy in force, or apply a new one (the policy admin ability)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

policy_app = typer.Typer(help="The gateway's policy: who may look at what.", no_args_is_help=True)


@policy_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="The policy file (YAML).", show_default=False)],
) -> None:
    """Validate FILE on the gateway and put it in force; a file that does not validate changes nothing.

    Sessions the new policy no longer allows end at once, and probes it no longer grants are removed.
    """
    from keyhole.cli.errors import CliError
    from keyhole.cli.gateway_client import api

    try:
        text = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    applied = api("POST", "/v1/policy", {"text": text})
    typer.echo(f"policy in force: {applied['roles']} roles, sha256 {applied['sha256'][:16]}, kept in {applied['path']}")
    if applied["sessions_ended"]:
        typer.echo(f"  sessions ended (no longer allowed): {', '.join(applied['sessions_ended'])}")
    if applied["probes_removed"]:
        typer.echo(f"  probes removed (no longer granted): {', '.join(applied['probes_removed'])}")


@policy_app.command("show")
def show() -> None:
    """Print the policy in force, as it was applied."""
    from keyhole.cli.gateway_client import api

    found = api("GET", "/v1/policy")
    if not found["in_force"]:
        typer.echo("no policy: the gateway's first rules are in force (any engineer may debug any service)")
        return
    typer.echo(found["text"], nl=not found["text"].endswith("\n"))
