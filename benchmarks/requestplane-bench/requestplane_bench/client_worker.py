"""The client process of a case: drive the load, then print the case's record."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import AsyncExitStack

from requestplane_core import Address, RequestPlane, TransportClient

from .case import Case
from .cpu import CpuMeter
from .emit import emit
from .endpoints import Mismatch, stream_request
from .fleet import SpreadMeter, fleet_rss_kib, join_fleet, routed_call, spread
from .load import Boundary, Call, LoadPlan, run_load
from .observers import observing_plugins
from .record import make_record
from .rss import peak_rss_kib

__all__ = ["Mismatch", "measure_case"]


def _unary(client: TransportClient, address: Address, payload: bytes) -> Call:
    request = client.request

    async def call() -> None:
        reply = await request(address, payload)
        if reply != payload:
            raise Mismatch(f"echo returned {len(reply)} bytes, not the {len(payload)} sent")

    return call


def _stream(client: TransportClient, address: Address, case: Case) -> Call:
    payload = stream_request(case.chunks, case.chunk_size, case.payload)
    expected = (case.chunks, case.chunks * case.chunk_size)

    async def call() -> None:
        count = size = 0
        async with client.stream(address, payload) as chunks:
            async for chunk in chunks:
                count += 1
                size += len(chunk)
        if (count, size) != expected:
            raise Mismatch(f"stream ended after {count} chunks / {size} bytes, not {expected}")

    return call


def _progress(phase: str, done: int) -> None:
    emit("progress", phase=phase, done=done)


async def measure_case(case: Case, addresses: dict[str, str], server_pids: Sequence[int]) -> None:
    spread_meter: SpreadMeter | None = None
    async with AsyncExitStack() as stack:
        client: TransportClient
        if case.direct:
            plane = RequestPlane(case.mode)  # resolves the settings only
            client = await stack.enter_async_context(plane.transport.spec.client(plane.settings))
        else:
            plane = await stack.enter_async_context(RequestPlane(case.mode))
            client = plane.client()
        payload = os.urandom(case.payload)
        meter = CpuMeter(server_pids)
        boundary: Boundary = meter
        if case.workers:
            router = await join_fleet(plane, case)
            call = routed_call(router, case, payload)
            boundary = spread_meter = SpreadMeter(router, meter)
        elif case.kind == "stream":
            call = _stream(client, Address.parse(addresses[case.endpoint_name]), case)
        else:
            call = _unary(client, Address.parse(addresses[case.endpoint_name]), payload)
        plan = LoadPlan(
            concurrency=case.concurrency,
            duration=case.duration,
            requests=case.requests,
            warmup=case.warmup,
            stall_timeout=case.stall_timeout,
        )
        outcome = await run_load(call, plan, _progress, boundary)
        server_rss: int | None
        try:
            if case.workers:
                server_rss = await fleet_rss_kib(plane, router)
            else:
                stats = json.loads(await client.request(Address.parse(addresses["stats"]), b""))
                server_rss = int(stats["rss_kib"])
        except Exception:
            server_rss = None  # the run's verdict comes from the load, not from this
    observers = [] if case.direct else observing_plugins(plane.plugins)
    record = make_record(
        case,
        outcome,
        client_rss_kib=peak_rss_kib(),
        server_rss_kib=server_rss,
        cpu_us=meter.per_request_us(outcome.completed + outcome.errors),
    )
    if spread_meter is not None:
        record["instance_requests"] = spread_meter.requests
        record["spread"] = spread(spread_meter.requests)
    record["observers"] = observers
    emit("result", record=record)
