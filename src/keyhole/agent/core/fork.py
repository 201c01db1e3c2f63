"""fork() (gunicorn workers): the agent's thread stops just before it, so the child inherits no lock
that thread holds and CPython sees a single-threaded process; after it, the parent's thread starts
again and the child gets a clean agent with the same probes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from keyhole.agent.probes.agent_thread import AgentThread


class ForkAware(Protocol):
    def pause_worker(self) -> None: ...

    def resume_worker(self) -> None: ...

    def after_fork_in_child(self) -> None: ...


def wait_for_os_thread_exit(limit: float = 0.05) -> None:
    """join() returns a moment before the operating system thread is gone, and fork() counts those."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if len(os.listdir(tasks)) <= threading.active_count():
                return
        except OSError:
            return
        time.sleep(0.0005)


def install_hooks(active: Callable[[], ForkAware | None], reset_in_child: Callable[[], None]) -> None:
    """Have the running agent (`active()`) follow every fork() of this process. `reset_in_child` runs
    first in the child, before the agent: it replaces locks the parent may have held."""
    if not hasattr(os, "register_at_fork"):
        return

    def before() -> None:
        agent = active()
        if agent is not None:
            agent.pause_worker()

    def after_in_parent() -> None:
        agent = active()
        if agent is not None:
            agent.resume_worker()

    def after_in_child() -> None:
        reset_in_child()
        AgentThread.ident = -1
        AgentThread.busy = False
        agent = active()
        if agent is not None:
            agent.after_fork_in_child()

    os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)
