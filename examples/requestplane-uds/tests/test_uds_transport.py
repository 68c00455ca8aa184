"""What the conformance kit cannot know about this transport: its addresses, its socket
file, its wire format under abuse, and the command line working with it."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from requestplane_uds.frames import encode_frame, read_frame

from requestplane_core import (
    Address,
    ConfigError,
    ConnectionLost,
    PayloadTooLarge,
    Request,
    RequestPlane,
    Unavailable,
)

pytestmark = pytest.mark.anyio

BOUND = 15.0


async def echo(request: Request) -> bytes:
    return request.payload


async def count(request: Request) -> AsyncIterator[bytes]:
    for i in range(int(request.payload)):
        yield b"%d" % i


def plane(**settings: object) -> RequestPlane:
    return RequestPlane("uds", settings=settings, environ={})


def raises_config_error(match: str) -> pytest.RaisesExc[ConfigError]:
    # An error from a transport's start() reaches the caller as it is, not in a group.
    return pytest.raises(ConfigError, match=match)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Socket paths are limited to ~107 bytes, and pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="rp-uds-") as name:
        yield Path(name)


async def test_address_carries_an_awkward_socket_path(short_tmp: Path) -> None:
    path = short_tmp / "with space" / "50%?#" / "s.sock"
    path.parent.mkdir(parents=True)
    async with plane(path=path) as p:
        server = await p.server()
        address = await server.register("echo", echo)
        text = str(address)
        assert text.startswith("uds://localhost/")
        assert "with%20space" in text and text.endswith("/s.sock/echo")
        assert Address.parse(text) == address
        with anyio.fail_after(BOUND):
            assert await p.client().request(text, b"hi") == b"hi"


async def test_private_socket_is_removed_on_close() -> None:
    async with plane() as p:
        server = await p.server()
        address = await server.register("echo", echo)
        socket_file = anyio.Path("/" + address.path.rsplit("/", 1)[0])
        assert await socket_file.is_socket()
        assert (await socket_file.parent.stat()).st_mode & 0o777 == 0o700
    assert not await socket_file.exists()
    assert not await socket_file.parent.exists()


async def test_live_socket_is_not_stolen_but_a_stale_one_is_replaced(short_tmp: Path) -> None:
    path = short_tmp / "s.sock"
    async with await anyio.create_unix_listener(path):  # someone else's live server
        with anyio.fail_after(BOUND), raises_config_error("another server"):
            async with plane(path=path) as p:
                await p.server()
    # The listener is closed now but its file remains, as after a crash.
    assert path.is_socket()
    async with plane(path=path) as p:
        address = await (await p.server()).register("echo", echo)
        with anyio.fail_after(BOUND):
            assert await p.client().request(address, b"ok") == b"ok"


async def test_unusable_path_is_a_config_error(short_tmp: Path) -> None:
    with anyio.fail_after(BOUND), raises_config_error("REQUESTPLANE_UDS_PATH"):
        async with plane(path=short_tmp / "missing-dir" / "s.sock") as p:
            await p.server()


async def raw_exchange(
    address: Address, data: bytes, max_payload: int = 1 << 20
) -> dict[str, object]:
    """Send ``data`` as the whole request on a fresh connection; return the answer's header."""
    socket_path = "/" + address.path.rsplit("/", 1)[0]
    async with await anyio.connect_unix(socket_path) as stream:
        await stream.send(data)
        frame = await read_frame(BufferedByteReceiveStream(stream), max_payload)
        return dict(frame.header)


async def test_malformed_request_closes_only_that_connection() -> None:
    async with plane() as p:
        address = await (await p.server()).register("echo", echo)
        with anyio.fail_after(BOUND):
            garbage = b"\x00\x00\x00\x05\x00\x00\x00\x00hello"
            answer = await raw_exchange(address, garbage)
            assert answer["kind"] == "error" and answer["code"] == "protocol"
            wrong_kind = encode_frame("chunk", b"x")
            assert (await raw_exchange(address, wrong_kind))["code"] == "protocol"
            assert await p.client().request(address, b"fine") == b"fine"


async def test_server_enforces_its_limit_on_requests() -> None:
    async with plane(max_message_size=1024) as small, plane() as big:
        address = await (await small.server()).register("echo", echo)
        with anyio.fail_after(BOUND):
            # A client configured with a larger limit gets the server's refusal, typed.
            with pytest.raises(PayloadTooLarge):
                await big.client().request(address, b"x" * 5000)
            frame = encode_frame("request", b"y" * 5000, endpoint="echo", headers={}, timeout=None)
            assert (await raw_exchange(address, frame))["code"] == "too_large"
            assert await big.client().request(address, b"z" * 1000) == b"z" * 1000


async def test_client_enforces_its_limit_on_responses() -> None:
    async def big(request: Request) -> bytes:
        return b"x" * 2000

    async with plane() as p, plane(max_message_size=1024) as small:
        server = await p.server()
        big_at, count_at = await server.register("big", big), await server.register("n", count)
        client = small.client()
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge):
                await client.request(big_at, b"")
            # Small chunks are fine even when together they are over the limit.
            assert len(await client.request(count_at, b"500")) > 1024


async def test_client_close_fails_inflight_calls_with_connection_lost() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def block(request: Request) -> bytes:
        started.set()
        await release.wait()
        return b"late"

    async with plane() as p:
        address = await (await p.server()).register("block", block)
        client = p.client()
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    with pytest.raises(ConnectionLost):
                        await client.request(address, b"")

                tg.start_soon(call)
                await started.wait()
                await client.aclose()
            with pytest.raises(ConnectionLost, match="closed"):
                await client.request(address, b"")
            release.set()
        assert client.stats.open_connections == 0


async def test_connecting_to_a_gone_server_is_unavailable() -> None:
    async with plane() as p:
        address = await (await p.server()).register("echo", echo)
    async with plane() as p:
        with anyio.fail_after(BOUND), pytest.raises(Unavailable, match="cannot connect") as info:
            await p.client().request(address, b"")
        assert info.value.retriable


async def test_serve_and_call_from_the_command_line(anyio_backend: str) -> None:
    cli = [sys.executable, "-m", "requestplane_core.cli"]
    env = {**os.environ, "REQUESTPLANE_MODE": "uds"}
    with anyio.fail_after(BOUND * 2):
        async with await anyio.open_process(
            [*cli, "serve", "--json", "--backend", anyio_backend], env=env
        ) as server:
            assert server.stdout is not None
            lines = BufferedByteReceiveStream(server.stdout)
            addresses: dict[str, str] = {}
            while len(addresses) < 2:
                record = json.loads(await lines.receive_until(b"\n", 65536))
                addresses[record["endpoint"]] = record["address"]
            assert addresses["echo"].startswith("uds://localhost/")

            # `call` picks the transport from the address's scheme; no REQUESTPLANE_MODE.
            result = await anyio.run_process([*cli, "call", addresses["echo"], "--data", "hi"])
            assert result.stdout == b"hi"
            result = await anyio.run_process(
                [*cli, "call", addresses["stream"], "--data", "3", "--stream"]
            )
            assert result.stdout == b"0\n1\n2\n"

            server.send_signal(signal.SIGINT)
            assert await server.wait() == 0
    socket_file = anyio.Path("/" + Address.parse(addresses["echo"]).path.rsplit("/", 1)[0])
    assert not await socket_file.exists()
