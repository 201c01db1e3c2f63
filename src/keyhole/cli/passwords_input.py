"""Reading a password: from a prompt that does not echo, or from stdin for scripts."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from keyhole.cli.errors import CliError

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")]


def read_password(from_stdin: bool, prompt: str, confirm: bool = False) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError('--password-stdin read an empty password; pipe it in, e.g. printf %s "$PW" | keyhole ...')
        return password
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password; pipe it in and add --password-stdin")
    try:
        password = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != password:
            raise CliError("the two passwords differ; nothing was changed")
    except EOFError:
        raise CliError("no password given; nothing was changed") from None
    if not password:
        raise CliError("empty password; nothing was changed")
    return password
