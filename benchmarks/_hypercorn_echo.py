"""A bare hypercorn echo server (POST any path, the body comes back): the naive HTTP baseline.

``benchmarks/httpx_hypercorn.py`` measures httpx against it, and ``benchmarks/http_bench_client.py``
measures httpx and the requestplane HTTP client against it, so both compare with the same
server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config
from requestplane_bench.ports import free_port

__all__ = ["echo_app", "serve_echo"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":  # hypercorn on trio insists on the protocol
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serve_echo() -> AsyncIterator[str]:
    """Serve :func:`echo_app` on a free loopback port with hypercorn's server for the running
    backend; yields ``http://127.0.0.1:PORT/echo`` once it accepts, stops it on exit."""
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_max_requests = 1 << 62  # its default closes after 1000 requests
    stop = anyio.Event()
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(echo_app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        # hypercorn binds on its own: wait until it accepts.
        with anyio.fail_after(10):
            while True:
                try:
                    probe = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.02)
                else:
                    await probe.aclose()
                    break
        yield f"http://127.0.0.1:{port}/echo"
        stop.set()
