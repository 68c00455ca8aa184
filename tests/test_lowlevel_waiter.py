"""The one-shot waiter of requestplane_core.lowlevel, on each loop's own primitives."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from lowlevel_loops import LOOPS

from requestplane_core.lowlevel import primitives, waiter_factory

pytestmark = pytest.mark.anyio


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_set_wakes_the_waiting_task() -> None:
    waiter = waiter_factory()()
    woken = anyio.Event()

    async def wait() -> None:
        await waiter.wait()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set()
            waiter.set()
            waiter.set()  # a second set is harmless
        assert woken.is_set()


async def test_set_before_wait_returns_at_once() -> None:
    waiter = waiter_factory()()
    waiter.set()
    with anyio.fail_after(5):
        await waiter.wait()


async def test_a_cancelled_wait_then_set_is_harmless() -> None:
    new_waiter = waiter_factory()
    waiter = new_waiter()
    with anyio.fail_after(5):
        with anyio.move_on_after(0.01) as scope:
            await waiter.wait()
        assert scope.cancelled_caught
        waiter.set()  # e.g. the answer arrives just after the caller gave up
        await anyio.lowlevel.checkpoint()
        # The task is not woken a second time by the late set(): it waits on a new waiter.
        other = new_waiter()
        with anyio.move_on_after(0.01) as scope:
            await other.wait()
        assert scope.cancelled_caught


async def test_the_primitives_event_is_the_same_waiter() -> None:
    waiter = primitives().event()
    assert type(waiter) is type(waiter_factory()())
    woken = anyio.Event()

    async def wait() -> None:
        await waiter.wait()
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            waiter.set()
    assert woken.is_set()
