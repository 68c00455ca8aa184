"""Helpers shared by the HTTP transport's tests: a real server with test endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from requestplane_http.settings import HttpSettings

from requestplane_core import (
    Address,
    Request,
    Server,
    TransportClient,
    load_plugins,
    load_settings,
    serve,
)

# Only turns a hang into a failure, on a loaded 2-core machine.
BOUND = 15.0


def http_settings(**overrides: object) -> HttpSettings:
    return load_settings(HttpSettings, prefix="REQUESTPLANE_HTTP_", environ={}, overrides=overrides)


class Probe:
    """Events the handlers set so a test can wait for what happened on the server."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()
        self.release = anyio.Event()
        self.requests: list[Request] = []


def _handlers(probe: Probe) -> dict[str, Any]:
    async def echo(request: Request) -> bytes:
        return request.payload

    async def meta(request: Request) -> bytes:
        probe.requests.append(request)
        return b"ok"

    async def chunks(request: Request) -> AsyncIterator[bytes]:
        for part in request.payload.split(b","):
            yield part

    async def fail(request: Request) -> bytes:
        raise ValueError("bad input")

    async def fail_midstream(request: Request) -> AsyncIterator[bytes]:
        yield b"one"
        raise KeyError("lost")

    async def block(request: Request) -> bytes:
        probe.requests.append(request)
        probe.started.set()
        try:
            await probe.release.wait()
        except anyio.get_cancelled_exc_class():
            probe.cancelled.set()
            raise
        return b"released"

    async def endless(request: Request) -> AsyncIterator[bytes]:
        probe.started.set()
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0.01)
        except BaseException:
            probe.cancelled.set()
            raise

    return {
        "echo": echo,
        "meta": meta,
        "chunks": chunks,
        "fail": fail,
        "fail-midstream": fail_midstream,
        "block": block,
        "endless": endless,
    }


@attrs.define
class Served:
    server: Server
    client: TransportClient
    probe: Probe
    addresses: dict[str, Address]
    settings: HttpSettings

    def addr(self, name: str) -> Address:
        return self.addresses[name]

    def url(self, name: str) -> str:
        return str(self.addresses[name])


@asynccontextmanager
async def served(
    server_settings: Mapping[str, object] | None = None,
    client_settings: Mapping[str, object] | None = None,
) -> AsyncIterator[Served]:
    """A real HTTP transport server with the test endpoints, and a client of it."""
    spec = load_plugins(only="http").transport("http").spec
    settings = http_settings(**(server_settings or {}))
    probe = Probe()
    async with serve(spec, settings, drain_timeout=5) as server:
        addresses = {
            name: await server.register(name, handler) for name, handler in _handlers(probe).items()
        }
        client_config = http_settings(**{**(server_settings or {}), **(client_settings or {})})
        async with spec.client(client_config) as client:
            yield Served(server, client, probe, addresses, settings)
