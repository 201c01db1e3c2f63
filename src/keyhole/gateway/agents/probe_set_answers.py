"""The answer to an agent's probe-set poll, built once per change of its service's set and shared.

A new probe wakes every poll of the service at once. Reading the database and encoding the answer
for each of them (a hundred agents: a hundred reads of the same rows, each on the thread pool) made
the last agent wait for all the others. Here the first poll after a change loads the set on the
thread pool, every other poll of that change awaits the same load, and the encoded answer is reused
until the next change; only the server time is written per answer, so a cached answer never leaves
the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from keyhole.gateway.agents.notifier import Notifier
from keyhole.gateway.sessions.probe_commands import LiveProbe
from keyhole.protocol.link import probe_set_digest

_MAX_TARGETED = 10_000  # answers kept for instances with probes of their own, per change


@dataclass(frozen=True)
class Answer:
    digest: str
    head: bytes  # the JSON object up to the value of "server_time"

    def body(self) -> bytes:
        return self.head + repr(time.time()).encode() + b"}"


def _answer(probes: list[LiveProbe]) -> Answer:
    envelopes = [{"id": p.id, **p.envelope} for p in probes]
    digest = probe_set_digest(envelopes)
    head = json.dumps({"digest": digest, "probes": envelopes}, separators=(",", ":"))[:-1] + ',"server_time":'
    return Answer(digest, head.encode())


@dataclass
class _Built:
    generation: int
    probes: list[LiveProbe]
    shared: Answer  # for every instance no probe aims at
    targeted: frozenset[str]  # instances that some probe aims at
    by_instance: dict[str, Answer] = field(default_factory=dict)

    def answer(self, instance: str) -> Answer:
        if instance not in self.targeted:
            return self.shared
        found = self.by_instance.get(instance)
        if found is None:
            if len(self.by_instance) >= _MAX_TARGETED:
                self.by_instance.clear()
            mine = [p for p in self.probes if p.instance is None or p.instance == instance]
            found = self.by_instance[instance] = _answer(mine)
        return found


def _build(generation: int, probes: list[LiveProbe]) -> _Built:
    shared = _answer([p for p in probes if p.instance is None])
    targeted = frozenset(p.instance for p in probes if p.instance is not None)
    return _Built(generation, probes, shared, targeted)


class ProbeSetAnswers:
    """Per service: the answer at its current generation. Used from the event loop only."""

    def __init__(self, changes: Notifier, load: Callable[[str], list[LiveProbe]]) -> None:
        self._changes = changes
        self._load = load
        self._built: dict[str, _Built] = {}
        self._loading: dict[tuple[str, int], asyncio.Task[_Built]] = {}

    async def current(self, service: str, instance: str) -> tuple[int, Answer]:
        """The generation the answer is at (wait on it for the next change) and the answer."""
        generation = self._changes.generation(service)
        built = self._built.get(service)
        if built is None or built.generation != generation:
            built = await self._loaded(service, generation)
        return built.generation, built.answer(instance)

    async def _loaded(self, service: str, generation: int) -> _Built:
        key = (service, generation)
        task = self._loading.get(key)
        if task is None:
            # A task of its own: the poll that started the load may be cancelled (its agent left),
            # the others still wait for it.
            task = self._loading[key] = asyncio.ensure_future(self._read(service, generation))
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[str, int], task: asyncio.Task[_Built]) -> None:
        self._loading.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every poll awaiting it may have gone already

    async def _read(self, service: str, generation: int) -> _Built:
        built = _build(generation, await run_in_threadpool(self._load, service))
        latest = self._built.get(service)
        if latest is None or latest.generation <= generation:
            self._built[service] = built
        return built
