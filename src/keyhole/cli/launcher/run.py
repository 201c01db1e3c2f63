"""`keyhole run`: start a Python program with the agent loaded and a probe file set.

The program is exec'd in place of keyhole (same pid, same stdin/stdout/stderr, its own exit code and
signals). The agent comes in through a bootstrap directory that holds only a sitecustomize module,
put first on PYTHONPATH; the bootstrap removes every trace of itself from the environment before the
program's own code runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import keyhole.agent
from keyhole.agent.bootstrap.local_run import ENV_BOOTSTRAP, ENV_PYTHONPATH, ENV_SPEC
from keyhole.cli.errors import CliError
from keyhole.cli.launcher.probe_file import load_probe_file

MAX_SPEC_BYTES = 100_000
# Interpreter options that stop the bootstrap from loading (isolated mode, no site, no environment).
_BLOCKING_FLAGS = {"-I": "isolated mode", "-S": "no site module", "-E": "ignoring the environment"}


@dataclass(frozen=True)
class RunPlan:
    executable: str
    argv: list[str]
    env: dict[str, str]
    out: Path | None


def bootstrap_dir() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(keyhole.agent.__file__ or "")), "bootstrap", "pythonpath")


def _prefix_of(interpreter: str) -> str:
    """The environment an interpreter belongs to: a virtualenv's directory, or the installation prefix."""
    path = os.path.abspath(interpreter)
    venv = os.path.dirname(os.path.dirname(path))
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return os.path.normcase(venv)
    return os.path.normcase(os.path.dirname(os.path.dirname(os.path.realpath(path))))


def _shebang_interpreter(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").strip().split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0]


def _is_python_binary(path: str) -> bool:
    name = os.path.basename(os.path.realpath(path))
    return name.startswith(("python", "pypy")) and not name.endswith((".py", ".sh"))


def _refuse_blocking_flags(args: list[str]) -> None:
    """Interpreter options before the script: refuse those that would skip the bootstrap."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-", "-m", "-c") or not arg.startswith("-"):
            return
        if arg.startswith("--"):
            i += 1
            continue
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in "WX":  # the option's value is the rest of the argument, or the next one
                if j == len(letters) - 1:
                    i += 1
                break
            if letter in "mc":
                return
            flag = "-" + letter
            if flag in _BLOCKING_FLAGS:
                raise CliError(
                    f"python {flag} ({_BLOCKING_FLAGS[flag]}) would stop keyhole's agent from loading; "
                    f"run without {flag}"
                )
        i += 1


def resolve_interpreter(command: list[str]) -> tuple[str, list[str]]:
    """(path of the executable to exec, the interpreter that will run) or CliError."""
    program = command[0]
    found = shutil.which(program) if os.sep not in program else (program if os.path.exists(program) else None)
    if found is None:
        raise CliError(f"command {program!r} not found; give a Python interpreter or a console script on PATH")
    found = os.path.abspath(found)
    if _is_python_binary(found):
        interpreter = found
        _refuse_blocking_flags(command[1:])
    else:
        shebang = _shebang_interpreter(found)
        if shebang is None or not _is_python_binary(shebang):
            raise CliError(
                f"{program} is not a Python program; keyhole run starts python SCRIPT.py, "
                "python -m MODULE, or a console script of a Python environment"
            )
        interpreter = shebang
    mine = _prefix_of(sys.executable)
    theirs = _prefix_of(interpreter)
    if mine != theirs:
        raise CliError(
            f"{program} runs the Python in {theirs}, but this keyhole is installed in {mine}; "
            "install keyhole into that environment, or run the program with this environment's python"
        )
    return found, command


def plan_run(probes: Path, out: Path, command: list[str], metric_interval: float) -> RunPlan:
    if not command:
        raise CliError("no program given; usage: keyhole run --probes FILE -- python app.py [ARG...]")
    probe_file = load_probe_file(probes)
    executable, argv = resolve_interpreter(command)
    spec = {
        "probes": [p.to_dict() for p in probe_file.probes],
        "redaction": probe_file.redaction.to_dict(),
        "out": str(out.resolve()),
        "metric_interval": metric_interval,
    }
    encoded = json.dumps(spec)
    if len(encoded) > MAX_SPEC_BYTES:
        raise CliError(
            f"probe file {probes} is too large ({len(encoded)} bytes once validated; the limit is {MAX_SPEC_BYTES})"
        )
    return RunPlan(executable=executable, argv=argv, env=_environment(encoded, dict(os.environ)), out=out)


def plan_gateway_run(settings: dict[str, str | None], labels: dict[str, str], command: list[str]) -> RunPlan:
    """`keyhole run --gateway URL --service NAME -- COMMAND`: the agent takes its probes from the
    gateway. Everything that can be checked here is, so a mistake is one line before the program starts."""
    from keyhole.agent.errors import AgentError
    from keyhole.agent.link.config import ENV_TOKEN, build_config

    if not command:
        raise CliError("no program given; usage: keyhole run --gateway URL --service NAME -- python app.py")
    env = dict(os.environ)
    try:
        config = build_config(
            settings["gateway"],
            service=settings["service"],
            token=settings["token"],
            ca=settings["ca"],
            labels=labels or None,
            environ=env,
        )
    except AgentError as exc:
        raise CliError(str(exc)) from None
    executable, argv = resolve_interpreter(command)
    # The token travels in the bootstrap's variable, which it removes: the program never sees it.
    env.pop(ENV_TOKEN, None)
    spec = {
        "gateway": {
            "url": f"https://{config.host}:{config.port}",
            "service": config.service,
            "token": config.token,
            "ca_pem": config.ca_pem,
            "labels": config.labels,
        }
    }
    return RunPlan(executable=executable, argv=argv, env=_environment(json.dumps(spec), env), out=None)


def _environment(encoded: str, env: dict[str, str]) -> dict[str, str]:
    original = env.get("PYTHONPATH")
    boot = bootstrap_dir()
    if original is not None:
        env[ENV_PYTHONPATH] = original
    else:
        env.pop(ENV_PYTHONPATH, None)
    env["PYTHONPATH"] = boot + (os.pathsep + original if original else "")
    env[ENV_SPEC] = encoded
    env[ENV_BOOTSTRAP] = boot
    return env


def prepare_out(out: Path) -> None:
    """Start a fresh events file, mode 0600: this run's events only. A symbolic link is refused, not
    followed: events can hold what the program had in memory."""
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CliError(f"cannot write the events file {out}: {exc.strerror}; choose another path with --out") from None


def execute(plan: RunPlan) -> None:
    """Replace this process with the program. Returns only if exec fails (CliError)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(plan.executable, plan.argv, plan.env)
    except OSError as exc:
        raise CliError(f"cannot start {plan.argv[0]}: {exc.strerror}", exit_code=127) from None
