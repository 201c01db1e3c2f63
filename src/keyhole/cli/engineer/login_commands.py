"""`keyhole login` and `keyhole logout`: an engineer's credentials for a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyhole.cli import credentials
from keyhole.cli.errors import CliError
from keyhole.cli.passwords_input import PasswordStdin, read_password


def login(
    gateway: Annotated[
        str, typer.Option("--gateway", help="The gateway's URL, https://HOST:PORT.", show_default=False)
    ] = "",
    ca: Annotated[
        Path, typer.Option("--ca", help="The gateway's CA certificate (ca.pem).", show_default=False)
    ] = Path(),
    user: Annotated[str, typer.Option("--user", help="Your user name.", show_default=False)] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Log in to a gateway; stores a 15-minute access token and a refresh token (mode 0600)."""
    from keyhole.cli import gateway_client

    if not gateway or ca == Path() or not user:
        raise CliError("usage: keyhole login --gateway https://HOST:PORT --ca ca.pem --user NAME")
    if not gateway.startswith("https://"):
        raise CliError(f"the gateway URL must start with https:// (got {gateway!r}); keyhole has no plaintext mode")
    try:
        ca_pem = ca.read_text()
    except OSError as exc:
        raise CliError(f"cannot read the CA file {ca}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CliError(f"the CA file {ca} is not text; use the gateway's ca.pem") from None
    gateway_client.tls_context(ca_pem)
    password = read_password(password_stdin, f"password for {user}: ")
    response = gateway_client.call(
        gateway.rstrip("/"), ca_pem, "POST", "/v1/auth/login", body={"user": user, "password": password}
    )
    stored = gateway_client.store(gateway.rstrip("/"), ca_pem, gateway_client.expect(response))
    where = credentials.credentials_path()
    typer.echo(f"logged in to {stored.gateway} as {stored.user} ({stored.role}); credentials in {where}")


def logout() -> None:
    """Revoke this login's access and refresh tokens at the gateway and forget them here."""
    from keyhole.cli import gateway_client

    try:
        login = credentials.load()
    except CliError:
        typer.echo("not logged in")
        return
    response = gateway_client.call(login.gateway, login.ca_pem, "POST", "/v1/auth/logout", token=login.access_token)
    if response.status_code == 401:
        # The access token is refused: a refresh either gives one that can revoke the login, or shows
        # the login has already ended (401 again). Any other failure keeps the stored login.
        refreshed = gateway_client.refresh_login(login)
        if refreshed is None:
            typer.echo("logged out (the login had already ended at the gateway)")
            return
        login = refreshed
        response = gateway_client.call(login.gateway, login.ca_pem, "POST", "/v1/auth/logout", token=login.access_token)
    gateway_client.expect(response, 204)
    credentials.forget()
    typer.echo(f"logged out of {login.gateway}; both tokens are revoked")
