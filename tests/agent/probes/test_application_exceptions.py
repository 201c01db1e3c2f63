"""The application's own exceptions reach the application, even when they surface inside a probe hit
(a signal handler's timeout), and a hit near the recursion limit is skipped and counted, never a
RecursionError the application would not have had. Each runs in a fresh interpreter: signals need the
main thread, and the recursion limit is measured from an empty stack."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SIGNALS = """
import json, signal, sys, time
sys.path.insert(0, sys.argv[1])
import work
from keyhole.agent import Agent

class Timeout(Exception):
    pass

builtin = sys.argv[2] == "builtin"
handled = 0
inside = False

def on_alarm(signum, frame):
    # One exception per call of work(), and none while the previous one is on its way: CPython runs a
    # second handler inside the first one, and the first one's exception would then never exist.
    # No bytecode between the test and the store lets another handler in.
    global handled, inside
    if inside:
        inside = False
        handled += 1
        raise TimeoutError("tick") if builtin else Timeout("tick")

agent = Agent(lambda event: None, cpu_budget=1.0).start()
# A snapshot with a watch that sorts: most of each call is keyhole's work, where the signals land.
probe = {"id": "s", "kind": "snapshot", "file": "work.py", "line": 3, "rate": 100000, "max_hits": 10**7,
         "watch": ["sorted(data.keys())", "data"]}
agent.add_probe(probe).wait()
data = {f"k{i}": list(range(20)) for i in range(20)}
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
raised = 0
deadline = time.monotonic() + 2
while time.monotonic() < deadline:
    try:
        inside = True
        work.work(data)
    except (Timeout, TimeoutError):
        raised += 1
    finally:
        inside = False
signal.setitimer(signal.ITIMER_REAL, 0, 0)
hits = agent.probes()[0]["hits"]
agent.stop()
print(json.dumps({"handled": handled, "raised": raised, "hits": hits}))
"""

WORK = """
def work(data):
    total = len(data)  # the probed line
    return total
"""

RECURSION = """
import json, sys
sys.path.insert(0, sys.argv[1])
import deep
from keyhole.agent import Agent

plain = []
for _ in range(3):  # a loop, not a comprehension: on 3.11 that is a frame of its own
    plain.append(deep.down(0))
agent = Agent(lambda event: None, cpu_budget=1.0).start()
agent.add_probe({"id": "p", "rate": 100000, "max_hits": 100000, **json.loads(sys.argv[2])}).wait()
probed = []
for _ in range(3):
    try:
        probed.append(deep.down(0))
    except RecursionError:
        probed.append("RecursionError escaped")
(state,) = agent.probes()
agent.stop()
print(json.dumps({"plain": plain, "probed": probed, "state": state["state"], "no_stack": state.get("no_stack", 0),
                  "errors": state["errors"]}))
"""

DEEP = """
def down(n):
    try:
        return down(n + 1)  # the probed line
    except RecursionError:
        return n
"""


def _run(tmp_path: Path, script: str, module: tuple[str, str], *args: str) -> dict[str, object]:
    (tmp_path / module[0]).write_text(textwrap.dedent(module[1]))
    (tmp_path / "script.py").write_text(script)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("kind", ["builtin", "custom"])
def test_a_signal_handlers_exception_raised_during_a_hit_reaches_the_application(tmp_path: Path, kind: str) -> None:
    outcome = _run(tmp_path, SIGNALS, ("work.py", WORK), kind)
    assert isinstance(outcome["handled"], int) and outcome["handled"] > 100, outcome
    assert outcome["raised"] == outcome["handled"], f"the application lost some of its own exceptions: {outcome}"


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "log", "file": "deep.py", "line": 4, "template": "n={n}"},
        {"kind": "snapshot", "file": "deep.py", "line": 4, "watch": ["n + 1"]},
        {"kind": "metric", "file": "deep.py", "line": 4, "value": "n"},
        {"kind": "metric", "file": "deep.py", "line": 4},
        {"kind": "function", "function": "deep:down"},
    ],
    ids=["log", "snapshot", "metric-value", "metric-count", "function"],
)
def test_a_hit_near_the_recursion_limit_is_skipped_and_counted(tmp_path: Path, spec: dict[str, object]) -> None:
    outcome = _run(tmp_path, RECURSION, ("deep.py", DEEP), json.dumps(spec))
    plain, probed = outcome["plain"], outcome["probed"]
    assert isinstance(plain, list) and isinstance(probed, list)
    assert "RecursionError escaped" not in probed
    # The application reaches the same depth. Only at its very last frame, where its own next call
    # fails too, can keyhole's callback not be called at all (README: Limits): one or two frames.
    assert all(plain[0] - 2 <= depth <= plain[0] for depth in probed), outcome
    assert probed[-1] >= plain[0] - 1, outcome
    assert outcome["state"] == "installed" and outcome["errors"] == 0, outcome
    assert isinstance(outcome["no_stack"], int) and outcome["no_stack"] > 0, outcome
