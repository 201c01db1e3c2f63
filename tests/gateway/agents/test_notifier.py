"""The gateway's long-poll notifier, on its own: generations per key, waiters woken, none left behind."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from keyhole.gateway.agents.notifier import Notifier

# --- Notifier ------------------------------------------------------------------------------------------------------
# The private `_waiters` is read only to check that nothing is left behind: a leak there is invisible otherwise
# until the gateway runs out of memory.


def test_generations_start_at_zero_and_count_bumps_per_key() -> None:
    notifier = Notifier()
    assert notifier.generation("shop") == 0
    notifier.bump("shop")
    notifier.bump("shop")
    assert (notifier.generation("shop"), notifier.generation("billing")) == (2, 0)


def test_wait_returns_true_at_once_when_the_generation_already_moved() -> None:
    notifier = Notifier()
    seen = notifier.generation("shop")
    notifier.bump("shop")  # a change between reading the generation and waiting must not be missed
    start = time.monotonic()
    assert asyncio.run(notifier.wait("shop", seen, timeout=5.0)) is True
    assert time.monotonic() - start < 1.0
    assert notifier._waiters == {}


def test_wait_returns_true_when_bumped_from_another_thread() -> None:
    # Changes are made on request threads while waiters are coroutines: the wake-up must cross to the loop.
    notifier = Notifier()

    async def scenario() -> tuple[bool, float]:
        start = time.monotonic()
        waiting = asyncio.create_task(notifier.wait("shop", 0, timeout=5.0))
        await asyncio.sleep(0)  # the task runs up to its await: it is registered as a waiter now
        assert notifier._waiters.get("shop")
        bumper = threading.Thread(target=notifier.bump, args=("shop",))
        bumper.start()
        try:
            return await waiting, time.monotonic() - start
        finally:
            bumper.join()

    woke, elapsed = asyncio.run(scenario())
    assert woke is True
    assert elapsed < 2.0
    assert notifier._waiters == {}


def test_every_waiter_on_a_key_is_woken() -> None:
    notifier = Notifier()

    async def scenario() -> list[bool]:
        waiters = [asyncio.create_task(notifier.wait("shop", 0, timeout=5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        threading.Thread(target=notifier.bump, args=("shop",)).start()
        return list(await asyncio.gather(*waiters))

    assert asyncio.run(scenario()) == [True, True, True]
    assert notifier._waiters == {}


def test_wait_returns_false_on_timeout_and_leaves_no_waiter() -> None:
    notifier = Notifier()
    start = time.monotonic()
    assert asyncio.run(notifier.wait("shop", 0, timeout=0.05)) is False
    assert time.monotonic() - start >= 0.04
    assert notifier._waiters == {}


def test_a_bump_of_another_key_does_not_wake_a_waiter() -> None:
    notifier = Notifier()

    async def scenario() -> bool:
        waiting = asyncio.create_task(notifier.wait("shop", 0, timeout=0.1))
        await asyncio.sleep(0)
        notifier.bump("billing")
        return await waiting

    assert asyncio.run(scenario()) is False
    assert notifier._waiters == {}


def test_a_cancelled_wait_leaves_no_waiter() -> None:
    # A client that hangs up cancels its long-poll; its future must not stay in the table.
    notifier = Notifier()

    async def scenario() -> None:
        waiting = asyncio.create_task(notifier.wait("shop", 0, timeout=5.0))
        await asyncio.sleep(0)
        assert notifier._waiters.get("shop")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert notifier._waiters == {}


def test_a_timed_out_waiter_does_not_take_a_live_waiters_place() -> None:
    # Two waiters on one key, one with a short timeout: when it leaves, the other must still be woken.
    notifier = Notifier()

    async def scenario() -> tuple[bool, bool]:
        short = asyncio.create_task(notifier.wait("shop", 0, timeout=0.02))
        long = asyncio.create_task(notifier.wait("shop", 0, timeout=5.0))
        short_result = await short
        threading.Thread(target=notifier.bump, args=("shop",)).start()
        return short_result, await long

    assert asyncio.run(scenario()) == (False, True)
    assert notifier._waiters == {}
