"""A real pure-Python library's own test suite (toolz, from PyPI) under `keyhole run`, with probes of every
kind on its hot lines: every test must end exactly as it does without keyhole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import line_of

toolz = pytest.importorskip("toolz", reason="toolz is part of the test dependencies (pyproject [test])")

KEYHOLE = str(Path(sys.executable).parent / "keyhole")


def _outcomes(report: Path) -> dict[tuple[str, str], str]:
    outcomes: dict[tuple[str, str], str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        result = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                result = child.tag
        outcomes[(case.get("classname", ""), case.get("name", ""))] = result
    return outcomes


def _suite(
    tmp_path: Path, name: str, prefix: list[str]
) -> tuple[subprocess.CompletedProcess[str], dict[tuple[str, str], str]]:
    report = tmp_path / f"{name}.xml"
    command = [
        *prefix,
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "toolz",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"--junitxml={report}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, check=False)
    return run, _outcomes(report)


def test_toolz_test_suite_gives_identical_results_under_keyhole(tmp_path: Path) -> None:
    package = Path(toolz.__file__).parent
    functoolz, itertoolz, dicttoolz = package / "functoolz.py", package / "itertoolz.py", package / "dicttoolz.py"
    curry_call = line_of(functoolz, "return self._partial(*args, **kwargs)")
    compose_step = line_of(functoolz, "ret = f(ret)")
    merge_loop = line_of(dicttoolz, "for d in dicts:")
    probes: list[dict[str, Any]] = [
        {
            "id": "curry-snap",
            "kind": "snapshot",
            "file": "toolz/functoolz.py",
            "line": curry_call,
            "watch": ["args", "len(kwargs)"],
            "max_hits": 5,
            "rate": 100,
        },
        {
            "id": "curry-log",
            "kind": "log",
            "file": "toolz/functoolz.py",
            "line": curry_call,
            "template": "curry call with {len(args)} args",
            "rate": 100000,
            "max_hits": 100000,
        },
        {"id": "curry-count", "kind": "metric", "file": "toolz/functoolz.py", "line": curry_call},
        {
            "id": "compose",
            "kind": "metric",
            "file": "toolz/functoolz.py",
            "line": compose_step,
            "value": "len(self.funcs)",
        },
        {
            "id": "merge",
            "kind": "log",
            "file": "toolz/dicttoolz.py",
            "line": merge_loop,
            "template": "merging {len(dicts)} mappings",
            "rate": 100000,
            "max_hits": 100000,
        },
        {
            "id": "groupby",
            "kind": "function",
            "function": "toolz.itertoolz:groupby",
            "rate": 100000,
            "max_hits": 100000,
        },
        {
            "id": "curry-raise",
            "kind": "exception",
            "function": "toolz.functoolz:curry.__call__",
            "exception": "TypeError",
            "max_hits": 100,
            "rate": 100000,
        },
    ]
    assert itertoolz.exists()
    spec = tmp_path / "probes.json"
    spec.write_text(json.dumps({"probes": probes}))
    out = tmp_path / "events.jsonl"

    plain, plain_outcomes = _suite(tmp_path, "plain", [])
    probed, probed_outcomes = _suite(
        tmp_path, "probed", [KEYHOLE, "run", "--probes", str(spec), "--out", str(out), "--"]
    )

    assert plain.returncode == probed.returncode == 0, probed.stdout[-2000:]
    assert len(plain_outcomes) > 150
    assert probed_outcomes == plain_outcomes

    events = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {(e["probe"], e["kind"]) for e in events}
    for expected in [
        ("curry-snap", "snapshot"),
        ("curry-log", "log"),
        ("curry-count", "metric"),
        ("compose", "metric"),
        ("merge", "log"),
        ("groupby", "function"),
        ("curry-raise", "exception"),
    ]:
        assert expected in kinds, expected
    assert not [e for e in events if e["kind"] == "error"], [e for e in events if e["kind"] == "error"][:3]
    assert not [e for e in events if e["kind"] == "disabled" and "hit limit" not in e["reason"]]
