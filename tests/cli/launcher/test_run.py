"""`keyhole run` end to end: real subprocesses, real files. The program must behave exactly as it does
without keyhole (stdout, stderr, exit code, environment), and a bad probe file must stop keyhole
before the program starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import line_of

KEYHOLE = str(Path(sys.executable).parent / "keyhole")

APP = """
import os
import sys

from shopkit.orders import checkout


def main():
    data = sys.stdin.read()
    total = 0
    for n in range(5):
        total += checkout(n, "alice@example.com")
    print(f"stdout total={total} stdin={data!r}")
    print("stderr line", file=sys.stderr)
    keyhole_vars = [k for k in os.environ if k.startswith("KEYHOLE")]
    print("PYTHONPATH=" + repr(os.environ.get("PYTHONPATH")), "KEYHOLE=" + repr(keyhole_vars))
    print("path=" + repr([p for p in sys.path if "bootstrap" in p]))
    if os.environ.get("APP_CRASH"):
        raise RuntimeError("the app crashed")
    if os.environ.get("APP_SIGNAL"):
        os.kill(os.getpid(), signal_number())
    sys.exit(3)


def signal_number():
    import signal
    return signal.SIGTERM


if __name__ == "__main__":
    main()
"""

ORDERS = """
def checkout(n, email):
    price = n * 10  # L-checkout
    api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    return price + len(api_key) * 0
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "shopkit").mkdir(parents=True)
    (root / "shopkit" / "__init__.py").write_text("")
    (root / "shopkit" / "orders.py").write_text(textwrap.dedent(ORDERS))
    (root / "shopkit" / "__main__.py").write_text("from shopkit.orders import checkout\nprint(checkout(4, 'x'))\n")
    (root / "app.py").write_text(textwrap.dedent(APP))
    return root


def _probes(tmp_path: Path, app: Path, *extra: dict[str, Any], suffix: str = ".json") -> Path:
    line = line_of(app / "shopkit" / "orders.py", "L-checkout")
    probes = [
        {
            "id": "snap",
            "kind": "snapshot",
            "file": "shopkit/orders.py",
            "line": line,
            "condition": "n == 3",
            "watch": ["email", "n * 2"],
        },
        {"id": "log", "kind": "log", "file": "shopkit/orders.py", "line": line, "template": "n={n} email={email}"},
        {"id": "count", "kind": "metric", "file": "shopkit/orders.py", "line": line, "value": "n"},
        {"id": "fn", "kind": "function", "function": "shopkit.orders:checkout", "max_hits": 2},
        *extra,
    ]
    path = tmp_path / f"probes{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"probes": probes}))
    else:
        import yaml

        path.write_text(yaml.safe_dump({"probes": probes}))
    return path


def _run(
    args: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60, env=full_env, check=False
    )


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _keyhole_run(probes: Path, out: Path, command: list[str]) -> list[str]:
    return [KEYHOLE, "run", "--probes", str(probes), "--out", str(out), "--", *command]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_the_program_sees_no_difference_and_the_events_are_written(tmp_path: Path, app: Path, suffix: str) -> None:
    probes = _probes(tmp_path, app, suffix=suffix)
    out = tmp_path / "events.jsonl"
    plain = _run([sys.executable, "app.py"], app, stdin="hello")
    probed = _run(_keyhole_run(probes, out, [sys.executable, "app.py"]), app, stdin="hello")
    assert (probed.stdout, probed.stderr, probed.returncode) == (plain.stdout, plain.stderr, plain.returncode)
    assert plain.returncode == 3 and "stdout total=100 stdin='hello'" in plain.stdout
    assert "PYTHONPATH=None KEYHOLE=[]" in probed.stdout and "path=[]" in probed.stdout

    events = _events(out)
    for event in events:
        assert {"probe", "kind", "ts", "thread", "pid"} <= set(event)
        assert event["ts"].endswith("Z")
    assert [e["message"] for e in events if e["kind"] == "log"] == [f"n={n} email=[redacted:pii]" for n in range(5)]
    snapshot = next(e for e in events if e["kind"] == "snapshot")
    assert snapshot["frames"][0]["function"] == "checkout"
    assert snapshot["frames"][0]["locals"]["n"] == 3
    assert snapshot["frames"][0]["locals"]["email"] == {"@redacted": "pii"}
    assert snapshot["watch"] == {"email": {"@redacted": "pii"}, "n * 2": 6}
    assert snapshot["frames"][1]["function"] == "main"
    metric = next(e for e in events if e["kind"] == "metric" and e["count"])
    assert (metric["count"], metric["sum"], metric["min"], metric["max"]) == (5, 10.0, 0.0, 4.0)
    calls = [e for e in events if e["kind"] == "function"]
    assert [(c["phase"], c["call"]) for c in calls] == [("entry", 1), ("return", 1), ("entry", 2), ("return", 2)]
    assert calls[1]["return"] == 0 and calls[3]["return"] == 10
    assert "sk_live" not in out.read_text() and "alice@" not in out.read_text()
    assert events[-1]["kind"] == "agent" and events[-1]["event"] == "stopped"


def test_tracebacks_and_signals_are_the_programs_own(tmp_path: Path, app: Path) -> None:
    probes = _probes(tmp_path, app)
    out = tmp_path / "events.jsonl"
    for env, code in (({"APP_CRASH": "1"}, 1), ({"APP_SIGNAL": "1"}, -signal.SIGTERM)):
        plain = _run([sys.executable, "app.py"], app, env=env)
        probed = _run(_keyhole_run(probes, out, [sys.executable, "app.py"]), app, env=env)
        assert plain.returncode == code
        assert (probed.stdout, probed.stderr, probed.returncode) == (plain.stdout, plain.stderr, plain.returncode)
        if env.get("APP_CRASH"):
            assert probed.stderr.rstrip().endswith("RuntimeError: the app crashed")


def test_python_dash_m_and_console_scripts(tmp_path: Path, app: Path) -> None:
    probes = _probes(tmp_path, app)
    out = tmp_path / "events.jsonl"
    result = _run(_keyhole_run(probes, out, [sys.executable, "-m", "shopkit"]), app)
    assert (result.returncode, result.stdout) == (0, "40\n")
    assert [e["message"] for e in _events(out) if e["kind"] == "log"] == ["n=4 email=x"]

    script = tmp_path / "shopkit-cli"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(app)!r})\n"
        "from shopkit.orders import checkout\nprint(checkout(2, 'y'))\n"
    )
    script.chmod(0o755)
    result = _run(_keyhole_run(probes, out, [str(script)]), tmp_path)
    assert (result.returncode, result.stdout) == (0, "20\n")
    assert [e["message"] for e in _events(out) if e["kind"] == "log"] == ["n=2 email=y"]


def test_child_processes_of_the_program_are_not_probed(tmp_path: Path, app: Path) -> None:
    (app / "spawner.py").write_text(
        textwrap.dedent(f"""
        import subprocess, sys
        from shopkit.orders import checkout
        checkout(1, "parent")
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, {str(app)!r}); "
                        "from shopkit.orders import checkout; checkout(2, 'child')"], check=True)
    """)
    )
    out = tmp_path / "events.jsonl"
    result = _run(_keyhole_run(_probes(tmp_path, app), out, [sys.executable, "spawner.py"]), app)
    assert result.returncode == 0, result.stderr
    assert [e["message"] for e in _events(out) if e["kind"] == "log"] == ["n=1 email=parent"]


def test_problems_found_while_running_are_events(tmp_path: Path, app: Path) -> None:
    extra = [
        {"id": "blank", "kind": "snapshot", "file": "shopkit/orders.py", "line": 1},
        {"id": "later", "kind": "snapshot", "file": "shopkit/never.py", "line": 3},
        {"id": "nofn", "kind": "function", "function": "shopkit.orders:chekout"},
    ]
    out = tmp_path / "events.jsonl"
    result = _run(_keyhole_run(_probes(tmp_path, app, *extra), out, [sys.executable, "app.py"]), app)
    assert result.returncode == 3
    events = _events(out)
    errors = {e["probe"]: e.get("error") or e.get("reason") for e in events if e["kind"] in ("error", "disabled")}
    assert "has no code; nearest lines with code: 2" in errors["blank"]
    assert "never set before the agent stopped" in errors["later"]
    assert "did you mean checkout" in errors["nofn"]


@pytest.mark.parametrize(
    ("probes", "message"),
    [
        ({"probes": [{"id": "p", "kind": "breakpoint", "file": "a.py", "line": 1}]}, "unknown kind 'breakpoint'"),
        (
            {"probes": [{"id": "p", "kind": "snapshot", "file": "a.py", "line": 1, "condition": "os.system('x')"}]},
            "calling .system() is not allowed",
        ),
        ({"probes": [{"id": "p", "kind": "log", "file": "a.py", "line": 1}]}, "missing field 'template'"),
        ({"probes": [{"id": "p", "kind": "snapshot", "file": "a.py", "line": "ten"}]}, "field 'line' must be"),
        (
            {"probes": [{"id": "p", "kind": "snapshot", "file": "a.py", "line": 1, "condition": "user.password"}]},
            "which keyhole redacts",
        ),
    ],
)
def test_an_invalid_probe_file_stops_keyhole_before_the_program(
    tmp_path: Path, probes: dict[str, Any], message: str
) -> None:
    spec = tmp_path / "probes.json"
    spec.write_text(json.dumps(probes))
    sentinel = tmp_path / "started"
    program = [sys.executable, "-c", f"open({str(sentinel)!r}, 'w').close()"]
    result = _run(_keyhole_run(spec, tmp_path / "events.jsonl", program), tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyhole: ") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--", sys.executable, "-c", "pass"], "missing --probes FILE"),
        (["run", "--probes", "{probes}"], "no program given"),
        (
            ["run", "--probes", "/nonexistent/probes.yaml", "--", sys.executable],
            "probe file /nonexistent/probes.yaml not found",
        ),
        (["run", "--probes", "{bad_yaml}", "--", sys.executable], "not valid YAML or JSON at line 3"),
        (["run", "--probes", "{probes}", "--", "no-such-program-xyz"], "command 'no-such-program-xyz' not found"),
        (["run", "--probes", "{probes}", "--", "/bin/echo", "hi"], "is not a Python program"),
        (["run", "--probes", "{probes}", "--", sys.executable, "-I", "-c", "pass"], "python -I (isolated mode)"),
        (["run", "--probes", "{probes}", "--", sys.executable, "-E", "-c", "pass"], "python -E"),
        (
            ["run", "--probes", "{probes}", "--out", "/nonexistent/dir/e.jsonl", "--", sys.executable, "-c", "pass"],
            "cannot write the events file",
        ),
        (["run", "--probes", "{probes}", "--metric-interval", "fast", "--", sys.executable], "--metric-interval"),
        (["frobnicate"], "No such command"),
        (["events"], "not logged in"),
        (["run", "--gateway", "http://127.0.0.1:1", "--service", "shop", "--", sys.executable], "https:// URL"),
        (["run", "--gateway", "https://127.0.0.1:1", "--", sys.executable], "no service name"),
        (["run", "--gateway", "https://127.0.0.1:1", "--service", "shop", "--", sys.executable], "no enrollment token"),
        (["run", "--probes", "{probes}", "--gateway", "https://127.0.0.1:1", "--", sys.executable], "cannot be used"),
        (["events", "--file", "/nonexistent/events.jsonl"], "events file /nonexistent/events.jsonl not found"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, app: Path, args: list[str], message: str) -> None:
    probes = _probes(tmp_path, app)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("probes:\n  - id: [unclosed\n")
    filled = [a.format(probes=probes, bad_yaml=bad_yaml) for a in args]
    isolated = {"KEYHOLE_CONFIG_DIR": str(tmp_path / "config"), "KEYHOLE_ENROLL_TOKEN": "", "KEYHOLE_SERVICE": ""}
    result = _run([KEYHOLE, *filled], tmp_path, env=isolated)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keyhole: ") and message in lines[0]


def test_a_program_of_another_python_environment_is_refused(tmp_path: Path, app: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "other")], check=True)
    other = tmp_path / "other" / "bin" / "python"
    result = _run([KEYHOLE, "run", "--probes", str(_probes(tmp_path, app)), "--", str(other), "-c", "pass"], tmp_path)
    assert result.returncode == 2
    assert "but this keyhole is installed in" in result.stderr and str(tmp_path / "other") in result.stderr


def test_version_and_help(tmp_path: Path) -> None:
    version = _run([KEYHOLE, "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("keyhole ")
    helped = _run([KEYHOLE, "run", "--help"], tmp_path)
    assert helped.returncode == 0 and "--probes" in helped.stdout


MAIN_SCRIPT = """
import time

def handle(n):
    doubled = n * 2  # L-handle
    return doubled

total = 0
for n in range(10):
    total += handle(n)  # L-loop
    time.sleep(0.05)
print(total)
"""


def test_probes_in_the_main_script(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(MAIN_SCRIPT))
    probes = tmp_path / "probes.json"
    probes.write_text(
        json.dumps(
            {
                "probes": [
                    {
                        "id": "fn",
                        "kind": "log",
                        "file": "service.py",
                        "line": line_of(script, "L-handle"),
                        "template": "n={n}",
                    },
                    {
                        "id": "top",
                        "kind": "log",
                        "file": "service.py",
                        "line": line_of(script, "L-loop"),
                        "template": "loop {n}",
                    },
                ]
            }
        )
    )
    out = tmp_path / "events.jsonl"
    result = _run(_keyhole_run(probes, out, [sys.executable, str(script)]), tmp_path)
    assert (result.returncode, result.stdout) == (0, "90\n")
    events = _events(out)
    messages = [e["message"] for e in events if e["kind"] == "log"]
    if sys.version_info >= (3, 12):
        # sys.monitoring catches the main script's code as it starts: its module-level loop is probed too.
        assert messages == [m for n in range(10) for m in (f"loop {n}", f"n={n}")]
    else:
        # 3.11 sets probes in the main script once its functions exist, a moment after it starts; its
        # module-level code is already running and cannot take a probe: an error event says so.
        handled = [m for m in messages if m.startswith("n=")]
        assert handled == [f"n={n}" for n in range(10 - len(handled), 10)] and len(handled) >= 5
        error = next(e for e in events if e["probe"] == "top" and e["kind"] == "error")["error"]
        assert "module-level code" in error and "3.11" in error
