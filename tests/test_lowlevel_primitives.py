"""The loop's primitives of requestplane_core.lowlevel, resolved once per client or server."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from lowlevel_loops import LOOPS, loop_name

from requestplane_core.lowlevel import cancel_scope_factory, primitives

pytestmark = pytest.mark.anyio


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_one_deadline_mechanism_per_loop(anyio_backend: Any) -> None:
    prims = primitives()
    if loop_name(anyio_backend) == "trio":
        assert prims.call_at is None and prims.move_on_at is not None
    else:
        assert prims.call_at is not None and prims.move_on_at is None


async def test_the_deadline_mechanism_fires() -> None:
    prims = primitives()
    with anyio.fail_after(5):
        if prims.call_at is not None:
            waiter = prims.event()
            prims.call_at(prims.clock() + 0.01, waiter.set)
            await waiter.wait()
        else:
            assert prims.move_on_at is not None
            with prims.move_on_at(prims.clock() + 0.01) as scope:
                await anyio.sleep_forever()
            assert scope.cancelled_caught


async def test_the_clock_is_anyios() -> None:
    clock = primitives().clock
    before = anyio.current_time()
    now = clock()
    assert before <= now <= anyio.current_time()


async def test_scopes_from_the_factory_are_anyio_cancel_scopes() -> None:
    new_scope = cancel_scope_factory()
    scope = new_scope()
    assert isinstance(scope, anyio.CancelScope)
    with anyio.fail_after(5):
        with scope:
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
