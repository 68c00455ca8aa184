"""The client's side of a fleet case: a router across the workers, the calls it measures,
and how the measured requests spread over the instances."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping

from requestplane_core import RequestPlane, Router

from .case import Case
from .endpoints import Mismatch, stream_request
from .load import Boundary, Call

__all__ = ["SpreadMeter", "fleet_rss_kib", "join_fleet", "routed_call", "spread"]

#: Seconds a client waits for every worker of the fleet to appear in discovery.
JOIN_TIMEOUT = 30.0


async def join_fleet(plane: RequestPlane, case: Case) -> Router:
    """A router for the case's endpoint once it sees all ``case.workers`` instances: measuring
    before the last one is listed would skew the spread."""
    router = plane.router(case.endpoint_name, route=case.route)
    await _listing(router, case.workers)
    return router


async def _listing(router: Router, count: int) -> None:
    try:
        await router.wait_for(count, JOIN_TIMEOUT)
    except TimeoutError:
        raise TimeoutError(
            f"{router.name!r}: {len(router.instances)} of {count} workers listed in discovery "
            f"after {JOIN_TIMEOUT:g} s"
        ) from None


def routed_call(router: Router, case: Case, payload: bytes) -> Call:
    """One measured call through the router: the unary echo or a stream, as the case says."""
    # hash needs a key per call; a counter spreads the calls over the ring like sessions do.
    keys = (str(n) for n in itertools.count()) if case.route == "hash" else None
    if case.kind == "stream":
        request = stream_request(case.chunks, case.chunk_size, case.payload)
        expected = (case.chunks, case.chunks * case.chunk_size)

        async def stream() -> None:
            count = size = 0
            key = None if keys is None else next(keys)
            async with router.stream(request, key=key) as chunks:
                async for chunk in chunks:
                    count += 1
                    size += len(chunk)
            if (count, size) != expected:
                raise Mismatch(f"stream ended after {count} chunks / {size} bytes, not {expected}")

        return stream

    send = router.request

    async def unary() -> None:
        reply = await send(payload, key=None if keys is None else next(keys))
        if reply != payload:
            raise Mismatch(f"echo returned {len(reply)} bytes, not the {len(payload)} sent")

    return unary


class SpreadMeter:
    """Counts the calls each instance got during the measured phase (the router's counters
    include the warm-up); chain it with another boundary such as the CPU meter."""

    def __init__(self, router: Router, then: Boundary) -> None:
        self._router = router
        self._then = then
        self._start: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    def __call__(self, edge: str) -> None:
        self._then(edge)
        now = {stats.instance: stats.requests for stats in self._router.stats()}
        if edge == "start":
            self._start = now
        else:
            self.requests = {k: n - self._start.get(k, 0) for k, n in sorted(now.items())}


def spread(requests: Mapping[str, int]) -> float | None:
    """Max over min requests per instance; None when one got none (or there are none)."""
    if not requests or min(requests.values()) <= 0:
        return None
    return round(max(requests.values()) / min(requests.values()), 3)


async def fleet_rss_kib(plane: RequestPlane, router: Router) -> int | None:
    """The largest peak RSS among the workers, asking each one's stats endpoint directly."""
    stats = plane.router("stats", route="direct")
    await _listing(stats, len(router.instances))
    largest: int | None = None
    for instance in router.instances:
        reply = await stats.request(b"", instance=instance.instance_id, timeout=5.0)
        rss = int(json.loads(reply)["rss_kib"])
        largest = rss if largest is None else max(largest, rss)
    return largest
