"""`keyhole agent enroll-token` and `keyhole agent revoke` (the enrollment ability): enrolling agents
and cutting them off."""

from __future__ import annotations

from typing import Annotated

import typer

from keyhole.cli.options import duration_option, labels_option

agent_app = typer.Typer(help="Enroll agents and revoke them (admin).", no_args_is_help=True)


@agent_app.command("enroll-token")
def enroll_token(
    service: Annotated[str, typer.Option("--service", help="The service the agent belongs to.", show_default=False)],
    ttl: Annotated[str, typer.Option("--ttl", help="How long the token can be used (once).")] = "10m",
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="KEY=VALUE label for the agent (repeatable).", show_default=False),
    ] = None,
) -> None:
    """Print a single-use enrollment token for one agent of SERVICE (give it as KEYHOLE_ENROLL_TOKEN)."""
    from keyhole.cli.gateway_client import api

    seconds = duration_option(ttl, "--ttl", minimum=10.0, maximum=24 * 3600.0)
    answer = api(
        "POST", "/v1/enroll-tokens", {"service": service, "ttl": seconds, "labels": labels_option(label)}, ok=(201,)
    )
    typer.echo(answer["token"])


@agent_app.command("revoke")
def revoke(
    instance: Annotated[str, typer.Argument(help="An agent instance, as keyhole agents lists it.", show_default=False)],
) -> None:
    """Revoke the enrollment of INSTANCE: its certificates stop working at once, for every process that
    shares it (forked workers), and those agents drop their probes. They need a new enrollment token."""
    from urllib.parse import quote

    from keyhole.cli.gateway_client import api

    answer = api("POST", f"/v1/agents/{quote(instance, safe='')}/revoke")
    typer.echo(
        f"revoked the enrollment of {instance} (service {answer['service']}); cut off: {', '.join(answer['instances'])}"
    )
