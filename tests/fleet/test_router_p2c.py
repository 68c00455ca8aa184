"""p2c across real worker processes, on both loops: of two instances it never takes the busier
one, and an instance set aside after a failure is left out of the pairs."""

from __future__ import annotations

import collections
from pathlib import Path

import anyio
import pytest
from fleet_test_helpers import BOUND, fleet, until

from requestplane_core import RequestPlaneError

pytestmark = pytest.mark.anyio


async def test_p2c_never_takes_the_busier_instance_nor_one_set_aside(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        busy, *others = [await workers.start() for _ in range(3)]
        idle = {w.instance for w in others}
        async with workers.plane() as plane:
            # No retries: a call sent to an instance that cannot answer fails, visibly.
            router = plane.router("fleet/slow", route="p2c", retries=0)
            await router.wait_for(3, BOUND)
            held: list[str] = []

            async def hold() -> None:
                # The same router, sent to one instance: its calls count in that one's load.
                try:
                    await router.request(
                        b"30", route="direct", instance=busy.instance, timeout=BOUND
                    )
                except RequestPlaneError as exc:
                    held.append(type(exc).__name__)

            answers = collections.Counter[str]()
            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:
                    for _ in range(2):
                        tg.start_soon(hold)
                    await until(
                        lambda: sum(s.inflight for s in router.stats()) == 2, "2 calls held"
                    )
                    # Every pair holding the busy worker takes the other one; the idle two
                    # share the rest (each is missed 40 times in a row with p = 2**-40).
                    for _ in range(40):
                        answers[(await router.request(b"0", timeout=BOUND)).decode()] += 1
                    assert set(answers) == idle, answers

                    # Killed, the busy worker fails its held calls and is set aside: the
                    # pairs drawn with it are drawn again among the others.
                    busy.kill()
                    await busy.wait()
                    await until(lambda: len(held) == 2, "the held calls' outcomes")
                    answers.clear()
                    for _ in range(40):
                        answers[(await router.request(b"0", timeout=BOUND)).decode()] += 1
                    tg.cancel_scope.cancel()
            assert held == ["ConnectionLost", "ConnectionLost"]
            assert set(answers) == idle, answers
