"""Showing events to a person: a snapshot as a readable stack with a tree of locals, log lines, metrics."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from keyhole.cli.errors import CliError

_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def show_events(path: Path, *, as_json: bool, probe: str | None, follow: bool) -> None:
    if not path.exists():
        raise CliError(
            f"events file {path} not found; keyhole run writes keyhole-events.jsonl unless --out says otherwise"
        )
    if path.is_dir():
        raise CliError(f"{path} is a directory; pass the events file")
    bad = 0
    for line in _lines(path, follow):
        try:
            event = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(event, dict) or (probe is not None and event.get("probe") != probe):
            continue
        if as_json:
            print(line.rstrip("\n"))
            continue
        try:
            render_event(event, _console)
        except Exception:  # an event of an unexpected shape is shown as it is, never as a traceback
            _console.print(escape(line.rstrip("\n")))
    if bad:  # a diagnostic, on stderr, so that --json output stays parseable
        print(f"keyhole: {bad} line(s) of {path} were not JSON and were skipped", file=sys.stderr)


def print_events(events: list[dict[str, Any]], *, as_json: bool) -> None:
    """Events from the gateway: the same views as for a file."""
    for event in events:
        if as_json:
            print(json.dumps(event), flush=True)
            continue
        try:
            render_event(event, _console)
        except Exception:  # an event of an unexpected shape is shown as it is, never as a traceback
            _console.print(escape(json.dumps(event)))


def _lines(path: Path, follow: bool) -> Iterator[str]:
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        pending = ""
        while True:
            chunk = handle.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    if pending.strip():
                        yield pending
                    pending = ""
                continue
            if not follow:
                if pending.strip():
                    yield pending
                return
            time.sleep(0.2)


def _head(event: dict[str, Any]) -> str:
    ts = str(event.get("ts", ""))[11:23]
    probe = event.get("probe") or "agent"
    thread = event.get("thread")
    where = f" [dim]({escape(str(thread))}, pid {event.get('pid')})[/dim]" if thread else ""
    return f"[dim]{escape(ts)}[/dim] [bold]{escape(str(probe))}[/bold] {escape(str(event.get('kind')))}{where}"


def render_event(event: dict[str, Any], console: Console) -> None:
    kind = event.get("kind")
    head = _head(event)
    if kind == "log":
        console.print(f"{head}: {escape(str(event.get('message', '')))}")
    elif kind == "snapshot":
        tree = Tree(head)
        _frames(tree, event.get("frames") or [])
        watch = event.get("watch") or {}
        if watch:
            branch = tree.add("[bold]watch[/bold]")
            for expression, value in watch.items():
                _value(branch, expression, value)
        console.print(tree)
    elif kind == "metric":
        fields = ["count", "sum", "min", "max", "mean", "p50", "p90", "p99"]
        shown = "  ".join(f"{f}={_num(event[f])}" for f in fields if f in event)
        final = " (final)" if event.get("final") else ""
        console.print(f"{head}: {shown}  over {event.get('interval')}s{final}")
    elif kind == "function":
        phase = event.get("phase")
        call = event.get("call")
        if phase == "entry":
            tree = Tree(f"{head}: call {call} entered")
            for name, value in (event.get("args") or {}).items():
                _value(tree, name, value)
            console.print(tree)
        elif phase == "return":
            tree = Tree(f"{head}: call {call} returned after {event.get('duration_ms')} ms")
            _value(tree, "return", event.get("return"))
            console.print(tree)
        else:
            tree = Tree(f"{head}: call {call} raised after {event.get('duration_ms')} ms")
            _value(tree, "exception", event.get("exception"))
            console.print(tree)
    elif kind == "exception":
        exc = event.get("exception") or {}
        tree = Tree(f"{head}: {escape(str(exc.get('@type', '?')))} {escape(_inline(exc.get('args')))}")
        _frames(tree, event.get("frames") or [])
        console.print(tree)
    elif kind == "stacks":
        tree = Tree(head)
        for thread in event.get("threads") or []:
            branch = tree.add(f"thread {escape(str(thread.get('name')))}")
            for frame in thread.get("frames") or []:
                branch.add(_frame_label(frame))
        for task in event.get("tasks") or []:
            branch = tree.add(f"task {escape(str(task.get('name')))}{' (done)' if task.get('done') else ''}")
            for frame in task.get("frames") or []:
                branch.add(_frame_label(frame))
        console.print(tree)
    else:
        console.print(f"{head}: {escape(_status(event))}")


def _status(event: dict[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "installed":
        return (
            "at "
            + ", ".join(event.get("locations") or [])
            + "".join(f"\n    note: {n}" for n in event.get("notes") or [])
        )
    if kind == "agent":
        details = {k: v for k, v in event.items() if k not in ("probe", "kind", "ts", "thread", "pid", "event")}
        return f"{event.get('event')} " + " ".join(f"{k}={v}" for k, v in details.items())
    for key in ("error", "reason"):
        if key in event:
            return str(event[key])
    if kind in ("stats", "removed"):
        keys = ("hits", "emitted", "suppressed", "errors", "cpu_ms", "no_stack")
        return " ".join(f"{k}={event[k]}" for k in keys if k in event)
    if kind == "dropped":
        return f"{event.get('count')} events dropped (the agent's queue was full)"
    return ""


def _frame_label(frame: dict[str, Any]) -> str:
    function = escape(str(frame.get("function")))
    where = escape(f"{frame.get('file')}:{frame.get('line')}")
    return f"[cyan]{function}[/cyan] [dim]{where}[/dim]"


def _is_library(path: object) -> bool:
    """Frames of the standard library: their locals are shown by name only (--json has them all)."""
    text = str(path).replace("\\", "/")
    return "/lib/python3." in text and "/site-packages/" not in text


def _frames(tree: Tree, frames: list[dict[str, Any]]) -> None:
    for frame in frames:
        local_vars = frame.get("locals") or {}
        if local_vars and _is_library(frame.get("file")):
            names = ", ".join(escape(n) for n in local_vars if not n.startswith("@"))
            tree.add(f"{_frame_label(frame)} [dim](locals: {names})[/dim]")
            continue
        branch = tree.add(_frame_label(frame))
        for name, value in local_vars.items():
            if name == "@more":
                branch.add(f"[dim]... {value} more[/dim]")
                continue
            _value(branch, name, value)


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        if "@redacted" in value:
            return f"[redacted: {value['@redacted']}]"
        if "@items" in value:
            return "(" + ", ".join(_inline(v) for v in value["@items"]) + ")"
        if "@value" in value:
            return _inline(value["@value"])
        if "@error" in value:
            return f"<error: {value['@error']}>"
        if "@name" in value:
            return f"<{value.get('@type')} {value['@name']}>"
        return "{...}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)


def _value(tree: Tree, name: str, value: Any) -> None:
    label = f"[green]{escape(name[1:] if name.startswith('@@') else name)}[/green]"
    if isinstance(value, dict) and "@redacted" in value:
        tree.add(f"{label} = [bold red]{escape(_inline(value))}[/bold red]")
        return
    if isinstance(value, dict) and not any(
        k in value for k in ("@value", "@items", "@error", "@name", "@cycle", "@truncated")
    ):
        type_name = value.get("@type", "dict")
        branch = tree.add(f"{label}: [yellow]{escape(str(type_name))}[/yellow]")
        for key, item in value.items():
            if key == "@type":
                continue
            if key == "@more":
                branch.add(f"[dim]... {item} more[/dim]")
                continue
            if key == "@entries":
                for k, v in item:
                    _value(branch, _inline(k), v)
                continue
            _value(branch, key, item)
        return
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        branch = tree.add(f"{label}: [yellow]list[/yellow]")
        for i, item in enumerate(value):
            if isinstance(item, dict) and list(item) == ["@more"]:
                branch.add(f"[dim]... {item['@more']} more[/dim]")
            else:
                _value(branch, f"[{i}]", item)
        return
    if isinstance(value, dict):
        extra = ""
        if value.get("@truncated"):
            extra = f" [dim](not expanded: {value['@truncated']})[/dim]"
        elif value.get("@cycle"):
            extra = " [dim](cycle)[/dim]"
        elif "@size" in value and value.get("@type") == "str":
            extra = f" [dim](first {len(str(value.get('@value')))} of {value['@size']} characters)[/dim]"
        tree.add(f"{label} = {escape(_inline(value))} [yellow]{escape(str(value.get('@type', '')))}[/yellow]{extra}")
        return
    tree.add(f"{label} = {escape(_inline(value))}")
