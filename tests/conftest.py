from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyhole.agent import Agent, active_agent
from tests.helpers import Collector, ModuleMaker


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def agent(collector: Collector) -> Iterator[Agent]:
    running = Agent(collector, metric_interval=0.2).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[ModuleMaker]:
    maker = ModuleMaker(tmp_path / "src")
    (tmp_path / "src").mkdir()
    try:
        yield maker
    finally:
        maker.cleanup()


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every test leaves no agent running and no keyhole thread behind."""
    yield
    leftover = active_agent()
    if leftover is not None:
        leftover.stop()
        pytest.fail("a test left an agent running")
    names = [t.name for t in threading.enumerate() if t.name.startswith("keyhole")]
    assert not names, f"keyhole threads left behind: {names}"
