"""Loop timers of requestplane_core.lowlevel: ``loop.call_at`` on asyncio, a timer task on
trio; per-call deadlines rest on them."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from lowlevel_loops import LOOPS

from requestplane_core.lowlevel import loop_timers

pytestmark = pytest.mark.anyio


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_timers_fire_in_order_of_their_deadlines() -> None:
    fired: list[int] = []
    last = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = loop_timers(tg)
            now = timers.clock()
            assert abs(now - anyio.current_time()) < 1  # the same clock as anyio's
            timers.call_at(now + 0.03, lambda: (fired.append(3), last.set()))
            timers.call_at(now + 0.01, lambda: fired.append(1))
            timers.call_at(now + 0.02, lambda: fired.append(2))
            await last.wait()
            timers.close()
    assert fired == [1, 2, 3]


async def test_a_cancelled_timer_never_fires() -> None:
    fired: list[str] = []
    later = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = loop_timers(tg)
            now = timers.clock()
            timers.call_at(now + 0.01, lambda: fired.append("cancelled")).cancel()
            handle = timers.call_at(now + 0.02, lambda: (fired.append("kept"), later.set()))
            await later.wait()
            handle.cancel()  # after it fired: harmless
            timers.close()
    assert fired == ["kept"]


async def test_an_earlier_timer_wakes_the_timer_task_sooner() -> None:
    # On trio the timer task sleeps until the earliest deadline; a new, earlier one must
    # cut that sleep short rather than wait for the later one.
    fired = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = loop_timers(tg)
            now = timers.clock()
            far = timers.call_at(now + 3600, lambda: None)
            await anyio.wait_all_tasks_blocked()
            timers.call_at(now, fired.set)
            await fired.wait()
            far.cancel()
            timers.close()


async def test_many_cancelled_timers_do_not_stop_the_live_ones() -> None:
    # Answers usually come before their deadlines: most timers are cancelled, and the heap
    # is rebuilt without them now and then.
    fired: list[int] = []
    done = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = loop_timers(tg)
            now = timers.clock()
            for i in range(500):
                handle = timers.call_at(now + 3600 + i, lambda: fired.append(-1))
                handle.cancel()
            for i in range(5):
                timers.call_at(now, lambda i=i: fired.append(i))  # type: ignore[misc]
            timers.call_at(now + 0.05, done.set)
            await done.wait()
            timers.close()
    assert sorted(fired) == [0, 1, 2, 3, 4]


async def test_close_ends_the_timer_task_without_firing_what_is_not_due() -> None:
    fired: list[str] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            timers = loop_timers(tg)
            handle = timers.call_at(timers.clock() + 3600, lambda: fired.append("late"))
            timers.close()
            handle.cancel()  # what a closing client does with its calls' timers
        # The task group ended: on trio, the timer task did not outlive close().
    assert fired == []
