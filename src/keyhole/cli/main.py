"""The `keyhole` command line. Errors are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from keyhole.cli.errors import CliError
from keyhole.version import __version__

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
        typer.echo(f"keyhole {__version__}")
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
    *,
    probes: Annotated[Path, typer.Option("--probes", help="Probe file, JSON or YAML.", show_default=False)] = Path(),
    gateway: Annotated[
        str | None,
        typer.Option("--gateway", help="Take probes from this gateway (https://HOST:PORT).", show_default=False),
    ] = None,
    service: Annotated[str | None, typer.Option("--service", help="With --gateway: the service's name.")] = None,
    ca: Annotated[
        str | None, typer.Option("--ca", help="With --gateway: the gateway's ca.pem (else KEYHOLE_CA).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="With --gateway: KEY=VALUE label (repeatable).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Events file (JSON lines), started afresh.")] = Path(
        "keyhole-events.jsonl"
    ),
    metric_interval: Annotated[
        float, typer.Option("--metric-interval", min=0.1, max=3600, help="Seconds between metric reports.")
    ] = 5.0,
) -> None:
    """Run a Python program with keyhole's agent: probes from a file (local mode), or from a gateway.

    Usage: keyhole run --probes probes.yaml [--out events.jsonl] -- python app.py [ARG...]
    or:    KEYHOLE_ENROLL_TOKEN=... keyhole run --gateway URL --service NAME --ca ca.pem -- python app.py
    """
    from keyhole.cli.launcher.run import execute, plan_gateway_run, plan_run, prepare_out
    from keyhole.cli.options import labels_option

    if gateway is not None or service is not None:
        if probes != Path():
            raise CliError("--probes (local mode) and --gateway cannot be used together; choose one")
        settings = {"gateway": gateway, "service": service, "token": None, "ca": ca}
        execute(plan_gateway_run(settings, labels_option(label), list(command or [])))
        return
    if probes == Path():
        raise CliError(
            "missing --probes FILE or --gateway URL; usage: keyhole run --probes probes.yaml -- python app.py"
        )
    plan = plan_run(probes, out, list(command or []), metric_interval)
    prepare_out(out)
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
    """Show events of the current session (or of a file keyhole run wrote, with --file): snapshots as
    a stack with a tree of locals, log lines, metrics, status."""
    if file == Path():
        from keyhole.cli.engineer.session_events import show_session_events

        show_session_events(as_json=as_json, probe=probe, follow=follow)
        return
    from keyhole.cli.events_view import show_events

    show_events(file, as_json=as_json, probe=probe, follow=follow)


from keyhole.cli.admin.agent_commands import agent_app  # noqa: E402
from keyhole.cli.admin.audit_commands import audit_app  # noqa: E402
from keyhole.cli.admin.gateway_commands import gateway_app  # noqa: E402
from keyhole.cli.admin.policy_commands import policy_app  # noqa: E402
from keyhole.cli.admin.user_commands import user_app  # noqa: E402
from keyhole.cli.demo import demo  # noqa: E402
from keyhole.cli.engineer import probe_commands  # noqa: E402
from keyhole.cli.engineer.access_commands import access_app  # noqa: E402
from keyhole.cli.engineer.agent_list import agents  # noqa: E402
from keyhole.cli.engineer.login_commands import login, logout  # noqa: E402
from keyhole.cli.engineer.session_commands import session_app  # noqa: E402

app.add_typer(gateway_app, name="gateway")
app.add_typer(user_app, name="user")
app.add_typer(agent_app, name="agent")
app.add_typer(session_app, name="session")
app.add_typer(audit_app, name="audit")
app.add_typer(access_app, name="access")
app.add_typer(policy_app, name="policy")
app.command("login")(login)
app.command("logout")(logout)
app.command("agents")(agents)
app.command("demo")(demo)
for _name in ("snap", "log", "metric", "fn", "exc", "probes", "rm", "stacks"):
    app.command(_name)(getattr(probe_commands, _name))


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="keyhole", standalone_mode=False)
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
    # Outside standalone mode an Exit (Typer's answer to Ctrl-C among them) comes back as the return value.
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
