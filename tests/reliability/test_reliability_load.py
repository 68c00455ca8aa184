"""Scenario 5: a load test with faults injected, in which every request is accounted for.

Requests go from one client (this process) to a worker process at high concurrency, mixing
echoes, streams, handler errors (unary and mid-stream), caller cancellations and missed
deadlines; halfway through, the worker is killed (SIGKILL) and started again on the same
port. Every request must end in exactly one outcome: its correct response, ``cancelled``
(the caller gave up), or a typed error; their counts add up to the number sent, no other
exception appears, and nothing hangs (the whole run is bounded).

CI runs the issue's figure, 10,000 requests per transport and backend (about 30 s for all
six on two cores); a smaller or larger run::

    REQUESTPLANE_LOAD_REQUESTS=2000 .venv/bin/pytest tests/reliability/test_reliability_load.py

``REQUESTPLANE_LOAD_REQUESTS``: requests per transport and backend (default 10000).
``REQUESTPLANE_LOAD_CONCURRENCY``: requests in flight at once (default 200).
"""

from __future__ import annotations

import os
import random

import anyio
import pytest
from reliability_helpers import BOUND, Tally, plane, worker

from requestplane_core import Address, RequestPlaneError, TransportClient

pytestmark = pytest.mark.anyio

REQUESTS = int(os.environ.get("REQUESTPLANE_LOAD_REQUESTS", "10000"))
CONCURRENCY = int(os.environ.get("REQUESTPLANE_LOAD_CONCURRENCY", "200"))
#: Every call's timeout: on NATS, calls in flight when the worker dies end at their deadline.
TIMEOUT = 3.0
#: What each request does, and how often.
MIX = {
    "echo": 60,
    "fail": 8,
    "cancel": 8,
    "deadline": 4,
    "stream": 15,
    "stream-fail": 5,
}
#: Outcomes the restart may cause: the calls in flight at the kill, and calls made before the
#: worker is back (connection refused; NATS: nobody subscribes).
RESTART_ERRORS = {"ConnectionLost", "Unavailable", "EndpointNotFound"}
ALLOWED = {"ok", "cancelled", "RemoteError", "DeadlineExceeded"} | RESTART_ERRORS


def _plan(n: int) -> list[str]:
    rng = random.Random(7731)
    return rng.choices(list(MIX), weights=list(MIX.values()), k=n)


async def _one(client: TransportClient, a: dict[str, Address], kind: str, i: int) -> str:
    """Send request ``i`` of ``kind``; check its response; return its one outcome."""
    tag = b"%d" % i
    try:
        if kind == "echo":
            payload = b"ok:" + tag
            assert await client.request(a["work"], payload, timeout=TIMEOUT) == payload
        elif kind == "fail":
            await client.request(a["work"], b"fail:" + tag, timeout=TIMEOUT)
            raise AssertionError("a failing handler answered")
        elif kind == "cancel":
            payload = b"slow:" + tag
            with anyio.move_on_after(0.01):
                assert await client.request(a["work"], payload, timeout=TIMEOUT) == payload
                return "ok"
            return "cancelled"
        elif kind == "deadline":
            await client.request(a["work"], b"slow:" + tag, timeout=0.01)
            raise AssertionError("a call outlived its deadline")
        elif kind == "stream":
            async with client.stream(a["chunks"], b"ok:" + tag + b":4", timeout=TIMEOUT) as s:
                assert [c async for c in s] == [tag + b".%d" % j for j in range(4)]
        else:
            seen: list[bytes] = []
            async with client.stream(a["chunks"], b"fail:" + tag + b":4", timeout=TIMEOUT) as s:
                async for chunk in s:
                    seen.append(chunk)
            raise AssertionError("a stream that fails midway ended normally")
    except RequestPlaneError as exc:
        if kind == "stream-fail" and type(exc).__name__ == "RemoteError":
            assert seen == [tag + b".0", tag + b".1"], seen
        return type(exc).__name__
    return "ok"


async def test_load_with_faults_and_a_restart_accounts_for_every_request(
    mode: str, settings: dict[str, object], anyio_backend: str
) -> None:
    kinds = _plan(REQUESTS)
    tally = Tally()
    restart_errors = 0
    ok_after_restart = 0
    next_index = 0
    restarted = False
    up = anyio.Event()
    up.set()

    async with plane(mode, settings) as p, worker(mode, anyio_backend, settings) as w:
        client = p.client()
        a = dict(w.addresses)

        async def restart() -> None:
            nonlocal up, restarted
            up = anyio.Event()
            port = w.port
            w.kill()
            a.update(await w.restart())
            assert w.port == port
            restarted = True
            up.set()

        async def load(tg: anyio.abc.TaskGroup) -> None:
            nonlocal next_index, restart_errors, ok_after_restart
            while next_index < REQUESTS:
                i = next_index
                next_index += 1
                if i == REQUESTS // 2:
                    tg.start_soon(restart)
                outcome = await _one(client, a, kinds[i], i)
                tally.add(outcome)
                if outcome in RESTART_ERRORS:
                    restart_errors += 1
                    await up.wait()  # as a caller waiting for discovery to show a worker
                elif outcome == "ok" and restarted:
                    ok_after_restart += 1

        with anyio.fail_after(120 + REQUESTS * 0.02):
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(load, tg)

        tally.assert_accounted(REQUESTS, ALLOWED)
        assert restarted
        # At most each caller's call in flight at the kill and one more before it waited.
        assert restart_errors <= 2 * CONCURRENCY, tally.counts
        assert ok_after_restart > 0, tally.counts
        assert tally.counts["RemoteError"] > 0 and tally.counts["cancelled"] > 0, tally.counts
        with anyio.fail_after(BOUND):
            assert await client.request(a["echo"], b"after") == b"after"
