"""Shared test helpers: real modules on disk, a collecting sink, waiting for events."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from keyhole.agent import Agent


class Collector:
    """A sink that keeps every event, and lets a test wait for the ones it expects."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, probe: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [
                e
                for e in self.events
                if (probe is None or e.get("probe") == probe) and (kind is None or e.get("kind") == kind)
            ]

    def wait(
        self,
        probe: str | None = None,
        kind: str | None = None,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    e
                    for e in self.events
                    if (probe is None or e.get("probe") == probe)
                    and (kind is None or e.get("kind") == kind)
                    and (where is None or where(e))
                ]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [(e.get("probe"), e.get("kind"), e.get("error") or e.get("reason")) for e in self.events]
                    raise AssertionError(f"waited for {count} {kind} event(s) of {probe}; got {kinds}")
                self._cond.wait(left)


def line_of(path: Path, marker: str) -> int:
    """The line number of the first line containing `marker` (tests point probes at marked lines)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in {path}")


class ModuleMaker:
    """Writes real packages under a temporary directory and imports them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[str] = []
        sys.path.insert(0, str(root))

    def write(self, source: str, name: str = "mod") -> tuple[str, Path]:
        package = f"kh_{uuid.uuid4().hex[:10]}"
        directory = self.root / package
        directory.mkdir()
        (directory / "__init__.py").write_text("")
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        self.created.append(package)
        importlib.invalidate_caches()
        return f"{package}.{name}", path

    def load(self, source: str, name: str = "mod") -> tuple[ModuleType, Path]:
        module_name, path = self.write(source, name)
        return importlib.import_module(module_name), path

    def cleanup(self) -> None:
        for name in list(sys.modules):
            if any(name == p or name.startswith(p + ".") for p in self.created):
                del sys.modules[name]
        try:
            sys.path.remove(str(self.root))
        except ValueError:
            pass


@contextmanager
def running_agent(collector: Collector, **options: Any) -> Iterator[Agent]:
    agent = Agent(collector, **options).start()
    try:
        yield agent
    finally:
        agent.stop()


def rel(path: Path) -> str:
    """The probe-file form of a path: its last two components (package/module.py)."""
    return f"{path.parent.name}/{path.name}"
