"""Telling the application's exceptions from keyhole's own, where keyhole catches them on a probe hit.

keyhole runs no application code, yet the application's exceptions can still surface inside a hit:
a signal handler (a SIGALRM timeout) runs at the next bytecode of whatever Python code is running,
keyhole's included, and an asynchronous exception (PyThreadState_SetAsyncExc) is raised there too.
They belong to the application and must reach it, so every place that catches an exception on the
hit path asks this module first, and re-raises what it says is foreign.

An exception is the application's when it was raised in a frame of code that is neither keyhole's
nor the standard library's (a signal handler's frame), or when its class is defined outside the
built-ins, keyhole and the standard library (keyhole raises only those: its own errors, and what
built-in operations raise). Only the exception path pays for the test.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_traceback_of: Any = BaseException.__dict__["__traceback__"].__get__
_module_of: Any = type.__dict__["__module__"].__get__
_KEYHOLE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_OURS = frozenset({"builtins", "keyhole", *sys.stdlib_module_names})


def _ours(filename: object) -> bool:
    if type(filename) is not str:
        return False
    if filename.startswith((_KEYHOLE, "<frozen ")):
        return True
    # Installed packages can live under the standard library's directory: they are the application's.
    return filename.startswith(_STDLIB) and not any(part in filename for part in _INSTALLED)


def from_application(exc: BaseException) -> bool:
    tb = _traceback_of(exc)
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is not None and not _ours(last.tb_frame.f_code.co_filename):
        return True
    module = _module_of(type(exc))
    return type(module) is not str or module.partition(".")[0] not in _OURS
