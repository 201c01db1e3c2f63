"""The `keyhole` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import keyhole
from keyhole.cli.errors import CliError

app = typer.Typer(
    name="keyhole",
    help="keyhole: see inside a running Python service without pausing it or changing what it does.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keyhole {keyhole.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """keyhole: secure debugging of live Python services."""


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The program: python app.py, python -m pkg, or a console script.", show_default=False),
    ] = None,
    probes: Annotated[Path, typer.Option("--probes", help="Probe file, JSON or YAML.", show_default=False)] = Path(),
    out: Annotated[Path, typer.Option("--out", help="Events file (JSON lines), started afresh.")] = Path(
        "keyhole-events.jsonl"
    ),
    metric_interval: Annotated[
        float, typer.Option("--metric-interval", min=0.1, max=3600, help="Seconds between metric reports.")
    ] = 5.0,
) -> None:
    """Run a Python program with keyhole's agent and the probes of a file (local mode, no gateway).

    Usage: keyhole run --probes probes.yaml [--out events.jsonl] -- python app.py [ARG...]
    """
    from keyhole.cli.run import execute, plan_run, prepare_out

    if probes == Path():
        raise CliError("missing --probes FILE; usage: keyhole run --probes probes.yaml -- python app.py")
    plan = plan_run(probes, out, list(command or []), metric_interval)
    prepare_out(plan.out)
    execute(plan)


@app.command()
def events(
    file: Annotated[
        Path, typer.Option("--file", help="An events file written by keyhole run.", show_default=False)
    ] = Path(),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, as written.")] = False,
    probe: Annotated[str | None, typer.Option("--probe", help="Only this probe's events.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading as events are written.")] = False,
) -> None:
    """Show events: snapshots as a stack with a tree of locals, log lines, metrics, status."""
    from keyhole.cli.events_view import show_events

    if file == Path():
        raise CliError("missing --file EVENTS.jsonl (the events file keyhole run wrote)")
    show_events(file, as_json=as_json, probe=probe, follow=follow)


from keyhole.cli.account_commands import login, logout, user_app  # noqa: E402
from keyhole.cli.gateway_commands import gateway_app  # noqa: E402

app.add_typer(gateway_app, name="gateway")
app.add_typer(user_app, name="user")
app.command("login")(login)
app.command("logout")(logout)


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="keyhole", standalone_mode=False)
    except CliError as exc:
        print(f"keyhole: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("keyhole: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            print(context.get_help(), file=sys.stderr)
            return 2
        name = getattr(context, "info_name", None)
        where = f" (see 'keyhole {name} --help')" if name and name != "keyhole" else " (see 'keyhole --help')"
        message = " ".join(exc.format_message().split())
        print(f"keyhole: {message}{where}", file=sys.stderr)
        return exc.exit_code if exc.exit_code else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
