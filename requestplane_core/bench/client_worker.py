"""The client process of a case: drive the load, then print the case's record."""

from __future__ import annotations

import json
import os
from contextlib import AsyncExitStack

from ..address import Address
from ..manager import RequestPlane
from ..transport import TransportClient
from .case import Case
from .cpu import CpuMeter
from .emit import emit
from .endpoints import stream_request
from .load import Call, LoadPlan, run_load
from .observers import observing_plugins
from .record import make_record
from .rss import peak_rss_kib

__all__ = ["Mismatch", "measure_case"]


class Mismatch(Exception):
    """A response that is not what the endpoint sends: a transport bug, counted as an error."""


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


async def measure_case(case: Case, addresses: dict[str, str], server_pid: int | None) -> None:
    async with AsyncExitStack() as stack:
        client: TransportClient
        if case.direct:
            plane = RequestPlane(case.mode)  # resolves the settings only
            client = await stack.enter_async_context(plane.transport.spec.client(plane.settings))
        else:
            plane = await stack.enter_async_context(RequestPlane(case.mode))
            client = plane.client()
        endpoint = Address.parse(addresses[case.endpoint_name])
        if case.kind == "stream":
            call = _stream(client, endpoint, case)
        else:
            call = _unary(client, endpoint, os.urandom(case.payload))
        plan = LoadPlan(
            concurrency=case.concurrency,
            duration=case.duration,
            requests=case.requests,
            warmup=case.warmup,
            stall_timeout=case.stall_timeout,
        )
        meter = CpuMeter(server_pid)
        outcome = await run_load(call, plan, _progress, meter)
        server_rss: int | None
        try:
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
    record["observers"] = observers
    emit("result", record=record)
