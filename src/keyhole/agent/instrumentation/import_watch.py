"""Installing probes in modules imported after the probe was set.

A finder sits first on sys.meta_path. For an import whose module
name could hold a waiting probe (its last part is the file's name), it asks the other finders for the
spec, exactly as the import system would, and wraps that one loader's get_code: the code object is
instrumented after it is compiled and before it runs, so module-level lines and functions defined at
import are covered. The wrapper removes itself on first use. The finder stays first on
sys.meta_path from the agent's start to its stop, and does nothing while no probe waits: changing
sys.meta_path while another thread walks it could make that import skip a finder.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import CodeType, ModuleType
from typing import Any

from keyhole.agent.instrumentation.code_search import normalize

OnCode = Callable[[str, str, CodeType], CodeType]
Wants = Callable[[str], bool]


class ImportWatcher(importlib.abc.MetaPathFinder):
    def __init__(self, wants: Wants, on_code: OnCode) -> None:
        self._wants = wants
        self._on_code = on_code
        self._local = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if getattr(self._local, "busy", False):
            return None
        try:
            if not self._wants(fullname):
                return None
        except Exception:
            return None
        self._local.busy = True
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            self._local.busy = False
        if spec is not None and spec.origin and spec.loader is not None:
            try:
                self._wrap(spec.loader, fullname, normalize(spec.origin))
            except Exception:
                pass  # never break an import: the probe stays pending and the retry may still find it
        return spec

    def _wrap(self, loader: Any, fullname: str, origin: str) -> None:
        original = getattr(type(loader), "get_code", None)
        if original is None or not hasattr(loader, "__dict__") or not origin.endswith(".py"):
            return
        on_code = self._on_code

        def get_code(name: str) -> CodeType | None:
            if name != fullname:  # a loader shared by several modules (a zip file): not this one
                other: CodeType | None = original(loader, name)
                return other
            try:
                del loader.get_code
            except AttributeError:
                pass
            code: CodeType | None = original(loader, name)
            if code is None:
                return code
            try:
                return on_code(fullname, origin, code)
            except Exception:
                return code

        loader.get_code = get_code


def _find_with_others(
    watcher: ImportWatcher, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in list(sys.meta_path):
        if finder is watcher:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


def install(watcher: ImportWatcher) -> None:
    if watcher not in sys.meta_path:
        sys.meta_path.insert(0, watcher)


def uninstall(watcher: ImportWatcher) -> None:
    try:
        sys.meta_path.remove(watcher)
    except ValueError:
        pass
