"""What ExchangeClient does for every transport built on it, checked over real ones (the uds
example; tcp where it takes an exchange that can be abandoned without awaiting): the size
check, the configured timeout, the address cache, error accounting, a failed stream, a
stream dropped unclosed and the closed state. The conformance kit holds every transport to the
contract; these are the shared details behind it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import PurePath
from typing import Any

import anyio
import attrs
import pytest
from requestplane_tcp.client import TcpClient
from requestplane_tcp.settings import TcpSettings
from requestplane_uds.addressing import address_for, parse_target
from requestplane_uds.client import UdsClient
from requestplane_uds.settings import UdsSettings

from requestplane_core import (
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    PayloadTooLarge,
    Request,
    RequestPlane,
    load_settings,
)
from requestplane_core.plugin_api import (
    ExchangeClient,
    advertise_host_setting,
    describe_settings,
    host_setting,
    max_message_size_setting,
    port_setting,
    request_timeout_setting,
)

BOUND = 15.0


def plane() -> RequestPlane:
    return RequestPlane("uds", environ={})


def client_of(**settings: Any) -> UdsClient:
    """The transport's own client (a plane's is wrapped in instrumentation)."""
    return UdsClient(UdsSettings(**settings))


async def echo(request: Request) -> bytes:
    return request.payload


async def count(request: Request) -> AsyncIterator[bytes]:
    for i in range(int(request.payload)):
        yield b"%d" % i


@pytest.mark.anyio
async def test_an_oversize_request_is_refused_before_sending_with_one_message() -> None:
    async with plane() as p, client_of(max_message_size=1024) as client:
        address = await (await p.server()).register("echo", echo)
        assert isinstance(client, ExchangeClient)
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge) as unary:
                await client.request(address, b"x" * 1025)
            with pytest.raises(PayloadTooLarge) as streamed:
                async for _ in client.stream(address, b"x" * 1025):
                    pass
        expected = (
            "the request of 1025 bytes is over the limit of 1024 bytes "
            "(REQUESTPLANE_UDS_MAX_MESSAGE_SIZE); not sent"
        )
        assert str(unary.value) == str(streamed.value) == expected
        stats = client.stats.snapshot()
        assert (stats["requests"], stats["streams"], stats["errors"]) == (1, 1, 2)
        assert stats["bytes_sent"] == 0


@pytest.mark.anyio
async def test_the_configured_timeout_becomes_the_calls_deadline() -> None:
    seen: list[float | None] = []

    async def slow(request: Request) -> bytes:
        seen.append(request.deadline)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async with plane() as p, client_of(request_timeout=0.2) as client:
        address = await (await p.server()).register("slow", slow)
        with anyio.fail_after(BOUND):
            with pytest.raises(DeadlineExceeded, match=r"within the 0\.2s timeout"):
                await client.request(address, b"")
            stream = client.stream(address, b"")
            with pytest.raises(DeadlineExceeded, match=r"within its 0\.2s timeout"):
                await stream.__anext__()
        assert len(seen) == 2 and all(deadline is not None for deadline in seen)
        assert client.stats.errors == 2


@pytest.mark.anyio
async def test_addresses_are_parsed_once_and_bad_ones_are_counted_errors() -> None:
    async with plane() as p, client_of() as client:
        address = await (await p.server()).register("echo", echo)
        with anyio.fail_after(BOUND):
            assert await client.request(address, b"a") == b"a"
            assert client.target(address) is client.target(address)
            with pytest.raises(ConfigError):
                await client.request("tcp://127.0.0.1:1/echo", b"")
        assert client.stats.errors == 1


@pytest.mark.anyio
async def test_a_failed_stream_raises_again_but_counts_once() -> None:
    async with plane() as p, client_of() as client:
        address = await (await p.server()).register("echo", echo)
        target = address_for(PurePath(parse_target(address).socket_path), "gone")
        with anyio.fail_after(BOUND):
            stream = client.stream(target, b"")
            with pytest.raises(EndpointNotFound) as first:
                await stream.__anext__()
            with pytest.raises(EndpointNotFound) as again:
                await stream.__anext__()
        assert first.value is not again.value  # a fresh copy, with a traceback of its own
        assert client.stats.errors == 1


@pytest.mark.anyio
async def test_streams_yield_chunks_and_a_unary_answer_as_one_chunk() -> None:
    async with plane() as p, client_of() as client:
        server = await p.server()
        count_at, echo_at = await server.register("count", count), await server.register("e", echo)
        with anyio.fail_after(BOUND):
            assert [c async for c in client.stream(count_at, b"3")] == [b"0", b"1", b"2"]
            assert [c async for c in client.stream(echo_at, b"hi")] == [b"hi"]
            assert await client.request(count_at, b"3") == b"012"  # joined
        stats = client.stats.snapshot()
        assert (stats["requests"], stats["streams"], stats["errors"]) == (1, 2, 0)
        assert stats["bytes_sent"] == 1 + 2 + 1
        assert stats["bytes_received"] == 3 + 2 + 3
        assert stats["open_connections"] == 0


@pytest.mark.anyio
async def test_a_closed_client_refuses_new_calls() -> None:
    async with plane() as p, client_of() as client:
        address = await (await p.server()).register("echo", echo)
        await client.aclose()
        with anyio.fail_after(BOUND):
            with pytest.raises(ConnectionLost, match="the uds client is closed"):
                await client.request(address, b"")
            with pytest.raises(ConnectionLost, match="the uds client is closed"):
                async for _ in client.stream(address, b""):
                    pass


@pytest.mark.anyio
async def test_a_stream_dropped_unclosed_is_abandoned_and_forgotten() -> None:
    cancelled = anyio.Event()

    async def forever(request: Request) -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with RequestPlane("tcp", environ={}) as p, TcpClient(TcpSettings()) as client:
        address = await (await p.server()).register("forever", forever)
        with anyio.fail_after(BOUND):
            stream = client.stream(address, b"")
            assert await stream.__anext__() == b"first"
            del stream  # no aclose(): the stream's __del__ cancels the handler (tcp can)
            gc.collect()
            await cancelled.wait()
        assert not client._exchanges


@attrs.frozen
class _Shared:
    host: str = host_setting()
    port: int = port_setting()
    advertise_host: str | None = advertise_host_setting()
    max_message_size: int = max_message_size_setting()
    request_timeout: float | None = request_timeout_setting()


def test_setting_factories_declare_the_usual_variables_defaults_and_checks() -> None:
    fields = {f.env_var: f for f in describe_settings(_Shared, "REQUESTPLANE_X_")}
    assert list(fields) == [
        "REQUESTPLANE_X_HOST",
        "REQUESTPLANE_X_PORT",
        "REQUESTPLANE_X_ADVERTISE_HOST",
        "REQUESTPLANE_X_MAX_MESSAGE_SIZE",
        "REQUESTPLANE_X_REQUEST_TIMEOUT",
    ]
    loaded = load_settings(_Shared, prefix="REQUESTPLANE_X_", environ={})
    assert loaded == _Shared("127.0.0.1", 0, None, 32 * 1024 * 1024, None)
    for name, bad in [("PORT", "70000"), ("MAX_MESSAGE_SIZE", "0"), ("HOST", "a/b")]:
        with pytest.raises(ConfigError, match=f"REQUESTPLANE_X_{name}"):
            load_settings(
                _Shared, prefix="REQUESTPLANE_X_", environ={f"REQUESTPLANE_X_{name}": bad}
            )
