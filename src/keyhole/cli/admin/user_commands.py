"""`keyhole user add` and `keyhole user list`: local accounts (the users ability)."""

from __future__ import annotations

from typing import Annotated

import typer

from keyhole.cli.passwords_input import PasswordStdin, read_password

user_app = typer.Typer(help="Manage local user accounts (admin).", no_args_is_help=True)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The new user's name.", show_default=False)],
    role: Annotated[str, typer.Option("--role", help="admin or engineer.")] = "engineer",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a local account (argon2id password hash). Needs an admin login."""
    from keyhole.cli import gateway_client

    password = read_password(password_stdin, f"password for the new user {name}: ", confirm=True)
    created = gateway_client.api("POST", "/v1/users", {"name": name, "password": password, "role": role}, ok=(201,))
    typer.echo(f"user {created['name']} created ({created['role']})")


@user_app.command("list")
def user_list() -> None:
    """List local accounts. Needs an admin login."""
    from keyhole.cli import gateway_client

    for entry in gateway_client.api("GET", "/v1/users"):
        typer.echo(f"{entry['name']}\t{entry['role']}")
