"""Reading a probe file: JSON or YAML, validated whole before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from keyhole.cli.errors import CliError
from keyhole.protocol.errors import SpecError
from keyhole.protocol.probe_spec import ProbeFile, parse_probe_file_data


def load_probe_file(path: Path) -> ProbeFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"probe file {path} not found; pass --probes with a JSON or YAML probe file") from None
    except IsADirectoryError:
        raise CliError(f"probe file {path} is a directory; pass a JSON or YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read probe file {path}: {exc}") from None
    data = _parse(path, text)
    try:
        return parse_probe_file_data(data)
    except SpecError as exc:
        raise CliError(f"{path}: {exc}") from None


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise CliError(f"{path}: not valid YAML or JSON{where}: {problem}") from None
