from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.harness import RunningGateway, init_state, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    base = tmp_path_factory.mktemp("gateway")
    result = init_state(base / "state", base / "init-config")
    assert result.returncode == 0, result.stderr
    running = start_gateway(base / "state")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """This test's own CLI configuration directory (its stored login)."""
    return tmp_path / "config"
