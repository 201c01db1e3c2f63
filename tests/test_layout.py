"""The layout's rules, read from the source (README "Layout"): what each part may import, no import
circle between modules, small folders and files, and tests that mirror the parts. Every import
counts, also those inside functions and under TYPE_CHECKING: a circle a type checker needs is a
circle a reader has to untangle."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "keyhole"
TESTS = ROOT / "tests"
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
MAX_MODULES_PER_FOLDER = 20
MAX_LINES = 500
# What each part may import besides the standard library and itself (DESIGN.md's table).
ALLOWED = {
    "keyhole.protocol": {"keyhole.protocol"},
    "keyhole.agent": {"keyhole.agent", "keyhole.protocol", "keyhole.version", "bytecode"},
    "keyhole.verifier": {"keyhole.verifier", "keyhole.protocol", "cryptography"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def _imports(module: str) -> tuple[str, ...]:
    """Every module `module` imports: `from pkg import sub` names the submodule, not pkg/__init__."""
    path = _modules()[module]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in _modules()]
            found.extend(submodules if len(submodules) == len(node.names) else [target, *submodules])
    return tuple(found)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _internal_edges() -> Iterator[tuple[str, str]]:
    for module in _modules():
        for target in _imports(module):
            if target in _modules() and target != module:
                yield module, target


def test_no_import_circles_between_modules() -> None:
    graph: dict[str, set[str]] = {module: set() for module in _modules()}
    for module, target in _internal_edges():
        graph[module].add(target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"an import circle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    wrong = [
        f"{module} imports {target}"
        for module in _modules()
        if _within(module, part)
        for target in _imports(module)
        if target.split(".")[0] not in STDLIB and not any(_within(target, allowed) for allowed in ALLOWED[part])
    ]
    assert not wrong


def test_the_gateway_never_imports_the_agent_or_the_cli() -> None:
    wrong = [
        f"{module} imports {target}"
        for module in _modules()
        if _within(module, "keyhole.gateway")
        for target in _imports(module)
        if _within(target, "keyhole.agent") or _within(target, "keyhole.cli")
    ]
    assert not wrong


def test_the_cli_reaches_the_gateway_and_the_agent_only_where_it_starts_them() -> None:
    """`keyhole gateway init/serve` start a gateway, the launcher starts an agent; every other command
    talks to the gateway over HTTP."""
    starts = {"keyhole.gateway": "keyhole.cli.admin.gateway_commands", "keyhole.agent": "keyhole.cli.launcher"}
    wrong = [
        f"{module} imports {target}"
        for module in _modules()
        if _within(module, "keyhole.cli")
        for target in _imports(module)
        for part, starter in starts.items()
        if _within(target, part) and not _within(module, starter)
    ]
    assert not wrong


def test_importing_the_gateway_loads_no_agent_and_the_agent_no_third_party_library() -> None:
    gateway = [m for m in _modules() if _within(m, "keyhole.gateway") and ".migrations." not in m]
    agent = [m for m in _modules() if _within(m, "keyhole.agent") and not m.endswith("sitecustomize")]
    script = (
        "import importlib, sys\n"
        f"for name in {gateway!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('keyhole.agent', 'keyhole.cli'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    script = (
        "import importlib, sys\n"
        f"for name in {agent!r}: importlib.import_module(name)\n"
        "third = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'keyhole', 'bytecode'}\n"
        "print(sorted(m for m in third if not m.startswith('_')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_folder_holds_more_than_twenty_modules() -> None:
    crowded = {
        str(folder.relative_to(ROOT)): count
        for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")]
        if "migrations" not in folder.parts
        and (count := len([f for f in folder.glob("*.py") if f.name != "__init__.py"])) > MAX_MODULES_PER_FOLDER
    }
    assert not crowded


def test_no_file_is_over_500_lines_without_saying_why_at_its_top() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {len(lines)} lines"
        for path in sorted([*PACKAGE.rglob("*.py"), *TESTS.rglob("*.py")])
        if len(lines := path.read_text().splitlines()) > MAX_LINES
        and not any(f"over {MAX_LINES} lines" in line for line in lines[:15])
    ]
    assert not long


def test_tests_mirror_the_parts() -> None:
    """tests/<part>/<subpackage>/ exists only where src/keyhole/<part>/<subpackage>/ does."""
    helpers = {"data", "service", "__pycache__"}
    unmatched = [
        str(folder.relative_to(ROOT))
        for folder in TESTS.rglob("*")
        if folder.is_dir()
        and not helpers & set(folder.relative_to(TESTS).parts)
        and not (PACKAGE / folder.relative_to(TESTS)).is_dir()
    ]
    assert not unmatched
