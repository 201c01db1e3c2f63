"""Reading a thread's stack at a probe hit: file, line and function of each frame, locals of the top few.

Frame objects are used only while the hit is being handled and are never stored: CPython 3.13.0
crashes reading the locals of a frame that outlived its generator (gh-125723).
"""

from __future__ import annotations

from types import FrameType
from typing import Any

from keyhole.agent.reading.capture import Capturer
from keyhole.agent.reading.scope import OPAQUE_LOCALS, frame_locals_of


def frame_summary(frame: FrameType) -> dict[str, Any]:
    code = frame.f_code
    return {"file": code.co_filename, "line": frame.f_lineno, "function": code.co_qualname}


def frame_locals(frame: FrameType, capturer: Capturer, local_vars: Any = None) -> dict[str, Any]:
    """The frame's local variables, captured; a module-level frame shows its data, not its imports."""
    if local_vars is None:
        local_vars = frame_locals_of(frame)
    if local_vars is OPAQUE_LOCALS:
        return {"@error": "these locals are an application mapping (a class body or exec): not read"}
    module_level = frame.f_code.co_name == "<module>"
    optimized = bool(frame.f_code.co_flags & 0x0001)  # a function's locals: names are identifiers
    return capturer.fields(local_vars.items(), 0, skip_module_noise=module_level, identifiers=optimized)


# A captured frame: (file, line, function) or (file, line, function, locals). Tuples are cheaper to
# build on the hit than dicts; the agent's thread turns them into {"file", "line", "function", "locals"}.
CapturedFrame = tuple[Any, ...]


def capture_stack(
    frame: FrameType | None,
    capturer: Capturer,
    with_locals: int,
    max_frames: int,
    top_locals: Any = None,
) -> list[CapturedFrame]:
    """The stack from `frame` outwards (top frame first); `top_locals` saves reading the top frame's again."""
    out: list[CapturedFrame] = []
    count = 0
    while frame is not None and count < max_frames:
        code = frame.f_code
        if count < with_locals:
            local_vars = frame_locals(frame, capturer, top_locals if count == 0 else None)
            out.append((code.co_filename, frame.f_lineno, code.co_qualname, local_vars))
        else:
            out.append((code.co_filename, frame.f_lineno, code.co_qualname))
        count += 1
        frame = frame.f_back
    return out
