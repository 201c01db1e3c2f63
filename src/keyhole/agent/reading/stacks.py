"""Every thread's stack and every asyncio task's await chain, read without running application code."""

from __future__ import annotations

import sys
import threading
import types
from typing import Any

from keyhole.agent.reading import safe_attributes, safe_types
from keyhole.agent.reading.frames import frame_summary

# By id: hashing an arbitrary awaitable's type could run its metaclass's __hash__.
_CORO_LINKS = {
    id(types.CoroutineType): ("cr_frame", "cr_await"),
    id(types.GeneratorType): ("gi_frame", "gi_yieldfrom"),
    id(types.AsyncGeneratorType): ("ag_frame", "ag_await"),
}
MAX_FRAMES = 50
MAX_TASKS = 500


def thread_name(ident: int) -> str:
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    if thread is None:
        return f"Thread-{ident}"
    d = safe_attributes.instance_dict(thread) or {}
    name = d.get("_name")
    return name if type(name) is str else f"Thread-{ident}"


def thread_stacks(skip: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ident, frame in sys._current_frames().items():
        name = thread_name(ident)
        if ident == skip or name.startswith("keyhole-"):
            continue  # keyhole's own threads (agent, link, upload) are not the application's
        frames: list[dict[str, Any]] = []
        current: types.FrameType | None = frame
        while current is not None and len(frames) < MAX_FRAMES:
            frames.append(frame_summary(current))
            current = current.f_back
        out.append({"id": ident, "name": name, "frames": frames})
    return out


def _all_tasks() -> list[Any]:
    tasks_module = sys.modules.get("asyncio.tasks")
    if tasks_module is None:
        return []
    namespace = safe_attributes.instance_dict(tasks_module) or {}
    found: list[Any] = []
    for name in ("_scheduled_tasks", "_all_tasks", "_eager_tasks"):
        collection = namespace.get(name)
        if collection is None:
            continue
        for _ in range(3):  # another thread may change it while we copy
            try:
                found.extend(list(collection))
                break
            except RuntimeError:
                continue
    unique: dict[int, Any] = {}
    for task in found:
        unique.setdefault(id(task), task)
    return list(unique.values())[:MAX_TASKS]


def _task_field(task: Any, c_method: str, python_attr: str) -> Any:
    """Call the C Task's own method (a subclass's override never runs), or read the pure-Python field."""
    for klass in safe_types.mro(type(task)):
        if safe_types.qualified_name(klass) in ("_asyncio.Task", "_asyncio.Future"):
            method = safe_types.class_lookup(klass, c_method)
            if type(method) is types.MethodDescriptorType:
                return method(task)
    d = safe_attributes.instance_dict(task) or {}
    return d.get(python_attr)


def task_stacks() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for task in _all_tasks():
        try:
            name = _task_field(task, "get_name", "_name")
            done = _task_field(task, "done", "_state")
            coro = _task_field(task, "get_coro", "_coro")
        except Exception:
            continue
        frames: list[dict[str, Any]] = []
        awaiting: str | None = None
        current = coro
        while current is not None and len(frames) < MAX_FRAMES:
            links = _CORO_LINKS.get(id(type(current)))
            if links is None:
                awaiting = safe_types.type_name(current)
                break
            frame = getattr(current, links[0])
            if frame is not None:
                frames.append(frame_summary(frame))
            current = getattr(current, links[1])
        entry: dict[str, Any] = {
            "name": name if type(name) is str else "?",
            "done": done is True or (type(done) is str and done == "FINISHED"),
            "frames": frames,
        }
        if awaiting is not None:
            entry["awaiting"] = awaiting
        out.append(entry)
    return out
