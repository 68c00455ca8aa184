"""Routing across a fleet of real worker processes (file discovery, tcp), on both loops:
spread, label filters, direct and hash modes, failover when a worker dies or drains, and a
prompt typed error when nothing is left."""

from __future__ import annotations

import collections
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from fleet_test_helpers import BOUND, fleet, until

from requestplane_core import ConfigError, ConnectionLost, NoInstances, RequestPlaneError

pytestmark = pytest.mark.anyio


async def test_round_robin_spreads_evenly_and_whoami_names_each_instance(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        started = [await workers.start() for _ in range(3)]
        async with workers.plane() as plane:
            router = plane.router("fleet/whoami", route="round_robin")
            await router.wait_for(3, BOUND)
            answers = collections.Counter()
            with anyio.fail_after(BOUND):
                for _ in range(30):
                    answers[(await router.request(b"")).decode()] += 1
            assert answers == {w.instance: 10 for w in started}, answers
            by_instance = {s.instance: s for s in router.stats()}
            assert {i: s.requests for i, s in by_instance.items()} == dict(answers)
            assert all(s.inflight == 0 and s.errors == 0 for s in by_instance.values())


async def test_labels_filter_and_direct_mode(anyio_backend: str, tmp_path: Path) -> None:
    async with fleet(tmp_path) as workers:
        old = await workers.start(REQUESTPLANE_LABELS="version=1")
        new = await workers.start(REQUESTPLANE_LABELS="version=2,zone=a")
        async with workers.plane() as plane:
            v2 = plane.router("fleet/whoami", labels={"version": "2"})
            await v2.wait_for(1, BOUND)
            assert [i.instance_id for i in v2.instances] == [new.instance]
            assert dict(v2.instances[0].metadata) == {"version": "2", "zone": "a"}
            with anyio.fail_after(BOUND):
                for _ in range(5):
                    assert await v2.request(b"") == new.instance.encode()
            anyone = plane.router("fleet/whoami", route="direct")
            await anyone.wait_for(2, BOUND)
            with anyio.fail_after(BOUND):
                assert await anyone.request(b"", instance=old.instance) == old.instance.encode()
                with pytest.raises(ConfigError, match="instance id"):
                    await anyone.request(b"")
                with pytest.raises(NoInstances, match="'nope' is not live"):
                    await anyone.request(b"", instance="nope")


async def test_hash_keeps_keys_and_moves_only_to_a_joining_instance(
    anyio_backend: str, tmp_path: Path
) -> None:
    keys = [f"session-{i}" for i in range(400)]
    async with fleet(tmp_path) as workers:
        for _ in range(3):
            await workers.start()
        async with workers.plane() as plane:
            router = plane.router("fleet/whoami", route="hash")
            await router.wait_for(3, BOUND)
            with anyio.fail_after(BOUND):
                before = {k: await router.request(b"", key=k) for k in keys}
                again = {k: await router.request(b"", key=k) for k in keys[:50]}
            assert again == {k: before[k] for k in keys[:50]}, "a key changed instance"
            assert len(set(before.values())) == 3
            joined = await workers.start()
            await router.wait_for(4, BOUND)
            with anyio.fail_after(BOUND):
                after = {k: await router.request(b"", key=k) for k in keys}
            moved = [k for k in keys if after[k] != before[k]]
            # Consistent hashing: a key moves only to the instance that joined...
            assert {after[k] for k in moved} == {joined.instance.encode()}
            # ...and about 1/4 of them do (loose bounds: instance ids are random).
            assert 0.08 < len(moved) / len(keys) < 0.45, len(moved)


async def test_a_killed_worker_fails_only_its_own_calls_and_is_set_aside(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        doomed = await workers.start()
        for _ in range(2):
            await workers.start()
        async with workers.plane() as plane:
            router = plane.router("fleet/slow", route="round_robin")
            await router.wait_for(3, BOUND)
            with anyio.fail_after(BOUND):
                for _ in range(3):  # a connection to each worker, so calls go out at once
                    await router.request(b"0")
            outcomes: dict[int, str] = {}
            in_flight = anyio.Event()

            async def call(i: int) -> None:
                try:
                    outcomes[i] = (await router.request(b"30", timeout=BOUND)).decode()
                except RequestPlaneError as exc:
                    outcomes[i] = type(exc).__name__

            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:
                    for i in range(6):
                        tg.start_soon(call, i)
                    await until(
                        lambda: sum(s.inflight for s in router.stats()) == 6, "6 calls in flight"
                    )
                    in_flight.set()
                    on_doomed = next(s for s in router.stats() if s.instance == doomed.instance)
                    assert on_doomed.inflight == 2
                    doomed.kill()
                    await doomed.wait()
                    # Let the dead worker's callers see their outcome, then end the rest.
                    await until(lambda: len(outcomes) == 2, "the dead worker's 2 outcomes")
                    tg.cancel_scope.cancel()
            assert sorted(outcomes.values()) == ["ConnectionLost", "ConnectionLost"], outcomes
            # New calls keep succeeding on the others, at once (the dead one is set aside).
            whoami = plane.router("fleet/whoami", route="round_robin")
            await whoami.wait_ready(BOUND)
            with anyio.fail_after(BOUND):
                answers = {(await whoami.request(b"")).decode() for _ in range(12)}
            assert doomed.instance not in answers and len(answers) == 2
            # Discovery drops it (pid gone) and the table follows.
            await whoami.wait_for(2, BOUND)


async def test_connection_lost_is_retried_only_when_idempotent(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        for _ in range(2):
            await workers.start()
        async with workers.plane() as plane:
            router = plane.router("fleet/slow", route="round_robin")
            await router.wait_for(2, BOUND)
            for idempotent in (False, True):
                result: list[object] = []

                async def call(flag: bool = idempotent, into: list[object] = result) -> None:
                    try:
                        into.append(await router.request(b"1", idempotent=flag, timeout=BOUND))
                    except RequestPlaneError as exc:
                        into.append(exc)

                with anyio.fail_after(BOUND):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(call)
                        await until(
                            lambda: any(s.inflight for s in router.stats()), "a call in flight"
                        )
                        busy = next(s for s in router.stats() if s.inflight)
                        victim = next(w for w in workers.workers if w.instance == busy.instance)
                        victim.kill()
                        await victim.wait()
                if not idempotent:
                    assert isinstance(result[0], ConnectionLost), result
                    # Discovery drops the dead one; a replacement makes two live instances.
                    await router.wait_for(1, BOUND)
                    await workers.start()
                    await router.wait_for(2, BOUND)
                else:
                    assert isinstance(result[0], bytes), result
                    assert result[0] != victim.instance.encode()


async def test_a_stream_fails_over_before_its_first_chunk_never_after(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        first = await workers.start()
        second = await workers.start()
        async with workers.plane() as plane:
            router = plane.router("fleet/count", route="round_robin")
            await router.wait_for(2, BOUND)
            got: list[bytes] = []
            with anyio.fail_after(BOUND), pytest.raises(ConnectionLost):
                async with router.stream(b"1000", timeout=BOUND) as chunks:
                    async for chunk in chunks:
                        got.append(chunk)
                        if len(got) == 3:
                            busy = next(s for s in router.stats() if s.inflight)
                            victim = first if busy.instance == first.instance else second
                            victim.kill()
            assert got[:3] == [b"0\n", b"1\n", b"2\n"]
            assert len(got) < 1000
            # Before the first chunk, a dead instance is passed over.
            with anyio.fail_after(BOUND):
                for _ in range(4):
                    async with router.stream(b"2", timeout=BOUND) as chunks:
                        assert [c async for c in chunks] == [b"0\n", b"1\n"]


async def test_a_draining_worker_is_withdrawn_first_and_no_call_fails(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        for _ in range(2):
            await workers.start()
        async with workers.plane() as plane:
            router = plane.router("fleet/whoami", route="round_robin")
            await router.wait_for(2, BOUND)
            failures: list[BaseException] = []
            calls = 0
            done = anyio.Event()

            async def load() -> None:
                nonlocal calls
                while not done.is_set():
                    try:
                        await router.request(b"", timeout=BOUND)
                    except RequestPlaneError as exc:
                        failures.append(exc)
                    calls += 1
                    await anyio.lowlevel.checkpoint()

            with anyio.fail_after(BOUND * 3):
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(load)
                    # A rolling restart: each worker in turn drains (SIGTERM) and a new one
                    # takes its place.
                    for worker in list(workers.workers):
                        replacement = await workers.start()
                        await router.wait_for(3, BOUND)
                        worker.terminate()
                        assert await worker.wait() == 0
                        await router.wait_for(2, BOUND)
                        assert replacement.instance in {i.instance_id for i in router.instances}
                    done.set()
            assert calls > 0 and failures == [], failures


async def test_nothing_to_call_is_a_prompt_typed_error(anyio_backend: str, tmp_path: Path) -> None:
    async with fleet(tmp_path) as workers:
        async with workers.plane() as plane:
            router = plane.router("fleet/whoami")
            with anyio.fail_after(BOUND), pytest.raises(NoInstances) as caught:
                await router.request(b"")
            message = str(caught.value)
            assert "0 known" in message and "0 set aside" in message
            assert str(tmp_path) in message, "the error names the discovery backend asked"
            assert caught.value.retriable
            only = await workers.start()
            await router.wait_for(1, BOUND)
            only.kill()
            await only.wait()
            with anyio.fail_after(BOUND), pytest.raises(RequestPlaneError) as caught2:
                # Refused: set aside, nothing else to try, the refusal is what the caller sees.
                await router.request(b"")
            assert caught2.value.retriable, caught2.value


async def test_overloaded_is_retried_elsewhere_and_the_instance_avoided(
    anyio_backend: str, tmp_path: Path
) -> None:
    async with fleet(tmp_path) as workers:
        busy = await workers.start(REQUESTPLANE_MAX_INFLIGHT="1")
        await workers.start(REQUESTPLANE_MAX_INFLIGHT="1")
        async with workers.plane() as plane:
            slow = plane.router("fleet/slow", route="direct")
            router = plane.router("fleet/whoami", route="round_robin")
            await router.wait_for(2, BOUND)
            await slow.wait_for(2, BOUND)
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    # Fill the busy worker's one slot for the whole round.
                    tg.start_soon(lambda: slow.request(b"3", instance=busy.instance))
                    await until(lambda: any(s.inflight for s in slow.stats()), "a slow call")
                    answers = [(await router.request(b"")).decode() for _ in range(6)]
                    tg.cancel_scope.cancel()
            # Every call succeeded on the other worker; the busy one refused its turns.
            assert busy.instance not in answers and len(answers) == 6
            stats = {s.instance: s for s in router.stats()}
            assert stats[busy.instance].errors >= 1
            assert stats[busy.instance].requests == stats[busy.instance].errors
