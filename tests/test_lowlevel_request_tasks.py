"""Native request tasks of requestplane_core.lowlevel: spawned on the loop's own
primitives, yet structured: nothing outlives its block or its spawner's join."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from lowlevel_loops import LOOPS

from requestplane_core.lowlevel import RequestTasks, Spawner, request_tasks

pytestmark = pytest.mark.anyio


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_spawned_tasks_run_and_use_anyio_freely() -> None:
    results: list[bytes] = []
    all_done = anyio.Event()

    async def work(tasks: RequestTasks, payload: bytes, holder: list[object]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.sleep, 0)
            with anyio.move_on_after(0.01) as scope:
                await anyio.sleep_forever()
            assert scope.cancelled_caught
            results.append(await anyio.to_thread.run_sync(bytes, payload))
            if len(results) == 10:
                all_done.set()
        finally:
            tasks.done(holder[0])

    with anyio.fail_after(5):
        async with request_tasks() as tasks:
            for i in range(10):
                holder: list[object] = []
                holder.append(tasks.spawn(work, tasks, str(i).encode(), holder))
            await all_done.wait()
    assert sorted(results) == sorted(str(i).encode() for i in range(10))


async def test_leaving_the_block_cancels_and_waits_for_the_stragglers() -> None:
    started = anyio.Event()
    release = anyio.Event()
    cleaned_up = anyio.Event()
    left = anyio.Event()

    async def slow_to_stop() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            # Cleanup that awaits, shielded: leaving the block must wait for it.
            with anyio.CancelScope(shield=True):
                await release.wait()
                cleaned_up.set()

    async def run_block() -> None:
        async with request_tasks() as tasks:
            tasks.spawn(slow_to_stop)
            await started.wait()
        left.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_block)
            await started.wait()
            await anyio.wait_all_tasks_blocked()
            assert not left.is_set(), "the block waits for its task"
            release.set()
            await left.wait()
    assert cleaned_up.is_set()


async def test_a_task_that_never_ran_does_not_hold_up_the_block() -> None:
    ran: list[int] = []

    async def never(i: int) -> None:
        ran.append(i)

    with anyio.fail_after(5):
        async with request_tasks() as tasks:
            for i in range(3):
                tasks.spawn(never, i)  # and the block ends before they run
        baseline = len(anyio.get_running_tasks())
    assert len(anyio.get_running_tasks()) == baseline


async def test_the_body_error_comes_out_as_it_is_and_spawn_is_closed_after() -> None:
    async def idle() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        with pytest.raises(KeyError):  # not an ExceptionGroup, on trio either
            async with request_tasks() as tasks:
                tasks.spawn(idle)
                await anyio.wait_all_tasks_blocked()
                raise KeyError("the reader's own error")
    with pytest.raises(RuntimeError, match="closed"):
        tasks.spawn(idle)


async def test_a_spawner_runs_tasks_and_joins_the_stragglers() -> None:
    finished: list[int] = []
    scopes: list[anyio.CancelScope] = []
    started = anyio.Event()

    async def quick(i: int) -> None:
        await anyio.lowlevel.checkpoint()
        finished.append(i)

    async def slow() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            started.set()
            await anyio.sleep_forever()
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()  # cleanup after its scope was cancelled
        finished.append(-1)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            spawner = Spawner()
            await spawner.start(tg)
            for i in range(5):
                spawner.spawn(quick, i)
            spawner.spawn(slow)
            await started.wait()
            while len(finished) < 5:
                await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()  # as a server's close cancels its requests' scopes
            await spawner.join()
            if -1 not in finished:  # trio: the nursery's tasks end with the task group
                await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert sorted(finished) == [-1, 0, 1, 2, 3, 4]
