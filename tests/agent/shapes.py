"""Source of a module with every shape of code a probe must work in (written to disk by the tests).

Each probed line carries a marker comment; every function raises ValueError for a negative input so
the same shapes serve function and exception probes.
"""

SHAPES_SOURCE = """
import asyncio
import functools
import threading

MODULE_VALUE = 41 + 1  # L-module


def plain(x):
    if x < 0:
        raise ValueError("negative")
    y = x * 2  # L-plain
    return y


class Shop:
    tax = 0.2

    def method(self, x):
        if x < 0:
            raise ValueError("negative")
        y = x + 1  # L-method
        return y

    @classmethod
    def cm(cls, x):
        if x < 0:
            raise ValueError("negative")
        y = x + 2  # L-classmethod
        return y

    @staticmethod
    def sm(x):
        if x < 0:
            raise ValueError("negative")
        y = x + 3  # L-staticmethod
        return y


def make_closure(k):
    def inner(x):
        if x < 0:
            raise ValueError("negative")
        y = x + k  # L-closure
        return y

    return inner


def deco_wraps(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


def deco_plain(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@deco_wraps
def decorated_wraps(x):
    if x < 0:
        raise ValueError("negative")
    y = x + 4  # L-wraps
    return y


@deco_plain
def decorated_plain(x):
    if x < 0:
        raise ValueError("negative")
    y = x + 5  # L-nowraps
    return y


def gen(x):
    if x < 0:
        raise ValueError("negative")
    for i in range(2):
        y = x + i  # L-generator
        yield y


async def coro(x):
    await asyncio.sleep(0)
    if x < 0:
        raise ValueError("negative")
    y = x + 6  # L-coroutine
    return y


async def agen(x):
    await asyncio.sleep(0)
    if x < 0:
        raise ValueError("negative")
    for i in range(2):
        y = x + i  # L-asyncgen
        yield y


def in_thread(x):
    result = []
    errors = []

    def work():
        if x < 0:
            raise ValueError("negative")
        y = x + 8  # L-thread
        result.append(y)

    def guarded():
        try:
            work()
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=guarded)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
"""


def call(module, shape, x):
    """Run one shape with input x the way application code would, returning its result."""
    import asyncio

    if shape == "plain":
        return module.plain(x)
    if shape == "method":
        return module.Shop().method(x)
    if shape == "classmethod":
        return module.Shop.cm(x)
    if shape == "staticmethod":
        return module.Shop.sm(x)
    if shape == "closure":
        return module.make_closure(10)(x)
    if shape == "wraps":
        return module.decorated_wraps(x)
    if shape == "nowraps":
        return module.decorated_plain(x)
    if shape == "generator":
        return list(module.gen(x))
    if shape == "coroutine":
        return asyncio.run(module.coro(x))
    if shape == "asyncgen":

        async def drain():
            return [v async for v in module.agen(x)]

        return asyncio.run(drain())
    if shape == "thread":
        return module.in_thread(x)
    raise AssertionError(shape)


# shape -> (marker of the probed line, qualified name of the function holding it)
SHAPES = {
    "plain": ("L-plain", "plain"),
    "method": ("L-method", "Shop.method"),
    "classmethod": ("L-classmethod", "Shop.cm"),
    "staticmethod": ("L-staticmethod", "Shop.sm"),
    "closure": ("L-closure", "make_closure.<locals>.inner"),
    "wraps": ("L-wraps", "decorated_wraps"),
    "nowraps": ("L-nowraps", "decorated_plain"),
    "generator": ("L-generator", "gen"),
    "coroutine": ("L-coroutine", "coro"),
    "asyncgen": ("L-asyncgen", "agen"),
    "thread": ("L-thread", "in_thread.<locals>.work"),
}
