"""`keyhole gateway init` and `keyhole gateway serve`: the gateway runs in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyhole.cli.errors import CliError
from keyhole.cli.options import duration_option

if TYPE_CHECKING:
    from keyhole.gateway.audit.webhook import Webhook

gateway_app = typer.Typer(help="Create and run a gateway.", no_args_is_help=True)

DataOption = Annotated[Path, typer.Option("--data", help="The gateway's state directory.", show_default=False)]


def _gateway_errors() -> type[Exception]:
    from keyhole.gateway.errors import GatewayError

    return GatewayError


@gateway_app.command("init")
def init(
    data: DataOption = Path(),
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="Another name or address the gateway is reached by (repeatable).", show_default=False
        ),
    ] = None,
) -> None:
    """Create a gateway state: database, certificate authority, signing key and the admin user.

    The admin password is KEYHOLE_ADMIN_PASSWORD when set; otherwise one is generated and printed once.
    """
    from keyhole.gateway.init_state import init_state

    if data == Path():
        raise CliError("missing --data DIR (a new directory for the gateway's state)")
    os.umask(0o077)
    try:
        result = init_state(data, os.environ.get("KEYHOLE_ADMIN_PASSWORD") or None, list(host or []))
    except _gateway_errors() as exc:
        raise CliError(str(exc), exit_code=1) from None
    paths = result.paths
    typer.echo(f"gateway state created in {paths.root}")
    typer.echo(f"  CA certificate (give it to engineers and agents): {paths.ca_cert}")
    typer.echo(f"  start it with: keyhole gateway serve --data {paths.root}")
    if result.admin_password is not None:
        typer.echo(f"  admin password (shown once, store it now): {result.admin_password}")
    else:
        typer.echo("  admin password: the one in KEYHOLE_ADMIN_PASSWORD")


def _webhook(url: str | None, secret_file: Path | None, ca: Path | None) -> Webhook | None:
    from keyhole.gateway.audit.webhook import Webhook, read_secret

    if url is None:
        if secret_file is not None or ca is not None:
            raise CliError("--webhook-secret-file and --webhook-ca go with --webhook URL")
        return None
    if secret_file is None:
        raise CliError("--webhook needs --webhook-secret-file FILE (the HMAC secret its POSTs are signed with)")
    return Webhook(url, read_secret(secret_file), ca)


@gateway_app.command("serve")
def serve(
    data: DataOption = Path(),
    *,
    listen: Annotated[str, typer.Option("--listen", help="User API address, HOST:PORT.")] = "127.0.0.1:8443",
    agent_listen: Annotated[
        str, typer.Option("--agent-listen", help="Agent endpoint address, HOST:PORT (mutual TLS).")
    ] = "127.0.0.1:8444",
    agent_cert_ttl: Annotated[
        str, typer.Option("--agent-cert-ttl", help="Lifetime of agents' client certificates (renewed at two thirds).")
    ] = "12h",
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="A policy file (YAML): deny by default; reloaded on SIGHUP. Default: DATA/policy.yaml if it exists.",
            show_default=False,
        ),
    ] = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help="POST access requests, decisions and security alerts to this URL (signed, HMAC-SHA256).",
            show_default=False,
        ),
    ] = None,
    webhook_secret_file: Annotated[
        Path | None,
        typer.Option("--webhook-secret-file", help="The webhook's HMAC secret (16+ bytes).", show_default=False),
    ] = None,
    webhook_ca: Annotated[
        Path | None,
        typer.Option(
            "--webhook-ca", help="CA certificates the webhook's HTTPS server is checked against.", show_default=False
        ),
    ] = None,
) -> None:
    """Serve the user API and the agent endpoint until SIGTERM or Ctrl-C."""
    from keyhole.gateway.context import GatewayContext
    from keyhole.gateway.server import Listen
    from keyhole.gateway.server import serve as run_server
    from keyhole.gateway.storage.state_paths import StatePaths

    if data == Path():
        raise CliError("missing --data DIR (a state made by keyhole gateway init)")
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        user_address = Listen.parse(listen, "--listen")
        agent_address = Listen.parse(agent_listen, "--agent-listen")
        cert_ttl = duration_option(agent_cert_ttl, "--agent-cert-ttl", minimum=10.0, maximum=7 * 86400.0)
        hook = _webhook(webhook, webhook_secret_file, webhook_ca)
        context = GatewayContext.open(StatePaths(data))
        context.webhook = hook
        from keyhole.gateway.access.policy_changes import apply_policy_file, default_policy_path

        if policy is None and default_policy_path(context).is_file():
            policy = default_policy_path(context)  # the one `keyhole policy apply` wrote
        if policy is not None:
            try:
                apply_policy_file(context, policy, "gateway")
            except BaseException:
                context.close()
                raise
            context.policy_path = policy
        run_server(context, user_address, agent_address, cert_ttl)
    except _gateway_errors() as exc:
        raise CliError(str(exc), exit_code=1) from None
