"""The pool's queue of requests waiting for room on full connections."""

from __future__ import annotations

import anyio
import pytest
from requestplane_http.capacity import Capacity

pytestmark = pytest.mark.anyio


async def test_one_waiter_woken_per_freed_stream_in_arrival_order() -> None:
    capacity = Capacity()
    woken: list[int] = []
    all_woken = anyio.Event()

    async def waiter(n: int, queued: anyio.Event) -> None:
        queued.set()
        await capacity.wait()
        woken.append(n)
        if len(woken) == 3:
            all_woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                queued = anyio.Event()
                tg.start_soon(waiter, n, queued)
                await queued.wait()
            await anyio.wait_all_tasks_blocked()
            capacity.wake(1)
            await anyio.wait_all_tasks_blocked()
            assert woken == [0], "one freed stream wakes exactly the first waiter"
            capacity.wake(1)
            await anyio.wait_all_tasks_blocked()
            assert woken == [0, 1]
            capacity.wake(5)  # more than are waiting: the rest is not kept for later
            await all_woken.wait()
    assert woken == [0, 1, 2]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    # Otherwise the next freed stream would be spent waking a caller who is gone.
    capacity = Capacity()
    second_woken = anyio.Event()
    first_scope = anyio.CancelScope()

    async def first() -> None:
        with first_scope:
            await capacity.wait()

    async def second() -> None:
        await capacity.wait()
        second_woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            first_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            capacity.wake(1)
            await second_woken.wait()
    assert first_scope.cancelled_caught
