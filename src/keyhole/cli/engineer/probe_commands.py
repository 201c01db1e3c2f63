"""Probe commands in the current session: snap, log, metric, fn, exc, probes, rm, stacks."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any
from urllib.parse import quote

import typer

from keyhole.cli.engineer import current_session
from keyhole.cli.errors import CliError
from keyhole.cli.options import duration_option, id_argument

# How long a probe command waits for the connected agents to report installed (or why not).
REPORT_WAIT = 5.0

MaxHits = Annotated[int | None, typer.Option("--max-hits", help="Stop after this many hits.", show_default=False)]
Ttl = Annotated[str | None, typer.Option("--ttl", help="Remove the probe after this long.", show_default=False)]
Condition = Annotated[str | None, typer.Option("--if", help="Only when this expression is true.", show_default=False)]


def _session() -> tuple[str, current_session.CurrentSession]:
    from keyhole.cli.gateway_client import fresh_login

    gateway = fresh_login().gateway
    return gateway, current_session.load(gateway)


def _location(text: str) -> tuple[str, int]:
    path, sep, line = text.rpartition(":")
    if not sep or not path or not line.isdigit() or int(line) < 1:
        raise CliError(f"the location must be FILE:LINE, such as shop/orders.py:42 (got {text!r})")
    return path, int(line)


def _limits(fields: dict[str, Any], max_hits: int | None, ttl: str | None) -> dict[str, Any]:
    if max_hits is not None:
        fields["max_hits"] = max_hits
    if ttl is not None:
        fields["ttl"] = duration_option(ttl, "--ttl", maximum=24 * 3600.0)
    return fields


def _report_line(report: dict[str, Any]) -> str:
    detail = f": {report['detail']}" if report["detail"] else ""
    return f"  {report['instance']}: {report['state']}{detail}"


def set_probe(fields: dict[str, Any], instance: str | None = None) -> dict[str, Any]:
    """Set a probe in the current session and report, per instance, what the agents said."""
    from keyhole.cli.gateway_client import api

    _, session = _session()
    body = {**fields, **({"instance": instance} if instance else {})}
    probe: dict[str, Any] = api("POST", f"/v1/sessions/{session.id}/probes", body, ok=(201,))
    deadline = time.monotonic() + REPORT_WAIT
    while True:
        probe = api("GET", f"/v1/sessions/{session.id}/probes/{quote(probe['id'], safe='')}")
        waiting = [r for r in probe["instances"] if r["state"] == "waiting" and r["connected"]]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return probe


def print_set(probe: dict[str, Any]) -> None:
    reports = probe["instances"]
    typer.echo(f"probe {probe['id']} ({probe['kind']}) set")
    for report in reports:
        typer.echo(_report_line(report))
    if not reports:
        typer.echo("  no agent of this service is connected; it will get the probe when it connects")
    elif all(r["state"] == "error" for r in reports):
        raise CliError(f"no agent could install probe {probe['id']}; remove it with: keyhole rm {probe['id']}", 1)


def snap(
    location: Annotated[str, typer.Argument(help="FILE:LINE", show_default=False)],
    condition: Condition = None,
    watch: Annotated[
        list[str] | None, typer.Option("--watch", help="An expression to capture (repeatable).", show_default=False)
    ] = None,
    max_hits: MaxHits = None,
    ttl: Ttl = None,
) -> None:
    """Snapshot the stack and locals when FILE:LINE runs."""
    path, line = _location(location)
    fields: dict[str, Any] = {"kind": "snapshot", "file": path, "line": line}
    if condition is not None:
        fields["condition"] = condition
    if watch:
        fields["watch"] = watch
    print_set(set_probe(_limits(fields, max_hits, ttl)))


def log(
    location: Annotated[str, typer.Argument(help="FILE:LINE", show_default=False)],
    template: Annotated[str, typer.Argument(help="The message, with {expressions}.", show_default=False)],
    condition: Condition = None,
    max_hits: MaxHits = None,
    ttl: Ttl = None,
) -> None:
    """Log a line when FILE:LINE runs, without changing the code."""
    path, line = _location(location)
    fields: dict[str, Any] = {"kind": "log", "file": path, "line": line, "template": template}
    if condition is not None:
        fields["condition"] = condition
    print_set(set_probe(_limits(fields, max_hits, ttl)))


def metric(
    location: Annotated[str, typer.Argument(help="FILE:LINE", show_default=False)],
    value: Annotated[
        str | None, typer.Option("--value", help="Summarise this expression (else count hits).", show_default=False)
    ] = None,
    condition: Condition = None,
    ttl: Ttl = None,
) -> None:
    """Count hits of FILE:LINE, or summarise a value there."""
    path, line = _location(location)
    fields: dict[str, Any] = {"kind": "metric", "file": path, "line": line}
    if value is not None:
        fields["value"] = value
    if condition is not None:
        fields["condition"] = condition
    print_set(set_probe(_limits(fields, None, ttl)))


def fn(
    function: Annotated[str, typer.Argument(help="MODULE:QUALNAME", show_default=False)],
    condition: Condition = None,
    max_hits: MaxHits = None,
    ttl: Ttl = None,
) -> None:
    """Record a function's calls: arguments, return value or exception, duration."""
    fields: dict[str, Any] = {"kind": "function", "function": function}
    if condition is not None:
        fields["condition"] = condition
    print_set(set_probe(_limits(fields, max_hits, ttl)))


def exc(
    function: Annotated[str, typer.Argument(help="MODULE:QUALNAME", show_default=False)],
    exception: Annotated[str, typer.Argument(help="Exception type name, e.g. ValueError.", show_default=False)],
    max_hits: MaxHits = None,
    ttl: Ttl = None,
) -> None:
    """Capture the locals of each frame when EXCEPTION leaves a function."""
    fields: dict[str, Any] = {"kind": "exception", "function": function, "exception": exception}
    print_set(set_probe(_limits(fields, max_hits, ttl)))


def probes(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per probe, per line.")] = False,
) -> None:
    """The probes of the current session, with each agent instance's report."""
    from keyhole.cli.gateway_client import api

    _, session = _session()
    found = api("GET", f"/v1/sessions/{session.id}/probes")
    if as_json:
        for probe in found:
            typer.echo(json.dumps(probe))
        return
    if not found:
        typer.echo(f"no probes in session {session.id}; set one with keyhole snap FILE:LINE")
    for probe in found:
        spec = probe["spec"]
        where = spec.get("function") or (f"{spec['file']}:{spec['line']}" if "file" in spec else "all threads")
        state = "removed" if probe["removed"] else "live"
        typer.echo(f"{probe['id']}  {probe['kind']:<9} {where}  {state}")
        for report in probe["instances"]:
            typer.echo(_report_line(report))


def rm(probe_id: Annotated[str, typer.Argument(help="The probe's id.", show_default=False)]) -> None:
    """Remove a probe from every agent."""
    from keyhole.cli.gateway_client import api

    id_argument(probe_id, "probe")
    _, session = _session()
    api("DELETE", f"/v1/sessions/{session.id}/probes/{quote(probe_id, safe='')}", ok=(204,))
    typer.echo(f"probe {probe_id} removed")


def stacks(
    instance: Annotated[str | None, typer.Option("--instance", help="Only this agent instance.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The stacks events as JSON lines.")] = False,
) -> None:
    """Every thread's stack and asyncio task's await chain, from each connected agent of the session's service."""
    from keyhole.cli.events_view import print_events
    from keyhole.cli.gateway_client import api

    _, session = _session()
    probe = set_probe({"kind": "stacks"}, instance)
    expected = {r["instance"] for r in probe["instances"] if r["state"] != "error"}
    if not expected:
        api("DELETE", f"/v1/sessions/{session.id}/probes/{quote(probe['id'], safe='')}", ok=(204,))
        raise CliError("no agent of this session's service is connected; see keyhole agents", 1)
    got: list[dict[str, Any]] = []
    after, deadline = 0, time.monotonic() + 10.0
    try:
        while {e.get("instance") for e in got} < expected and time.monotonic() < deadline:
            page = api("GET", f"/v1/sessions/{session.id}/events?after={after}&probe={probe['id']}&wait=2", timeout=10)
            got.extend(page["events"])
            after = page["last"]
    finally:
        api("DELETE", f"/v1/sessions/{session.id}/probes/{quote(probe['id'], safe='')}", ok=(204,))
    if not got:
        raise CliError("no agent sent its stacks in 10 s; see keyhole agents", 1)
    print_events(got, as_json=as_json)
