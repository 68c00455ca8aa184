"""loop_clock() reads the clock anyio.current_time() reads, on every backend."""

from __future__ import annotations

import anyio
import pytest

from requestplane_core import loop_clock

pytestmark = pytest.mark.anyio


async def test_loop_clock_is_anyios_clock() -> None:
    clock = loop_clock()
    before = anyio.current_time()
    now = clock()
    after = anyio.current_time()
    assert before <= now <= after
    await anyio.sleep(0.01)  # the clock moves with the loop (the only way to see it move)
    assert clock() >= after + 0.009  # asyncio may wake a clock resolution early
