"""httpx against hypercorn over h2c (HTTP/2 without TLS, prior knowledge): POST /echo.

The stack a user would reach for to do request/reply over HTTP/2 in Python: an ASGI app
that returns the body, one httpx.AsyncClient with http2 (all requests multiplexed on its
connection).

``--http1`` uses HTTP/1.1 with a pool of one connection per concurrent request instead
(httpx's HTTP/2 client slows down as more requests share its connection).

    python benchmarks/httpx_hypercorn.py [--http1] [--table]
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from _harness import peer_main
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from requestplane_core.bench.load import Call

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http1", action="store_true", help="HTTP/1.1, a connection pool")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(args: argparse.Namespace) -> AsyncIterator[str]:
    config = Config()
    port = _free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.keep_alive_max_requests = 1 << 62  # its default closes after 1000 requests
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: hypercorn_serve(app, config, shutdown_trigger=stop.wait))
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


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    pool = args.concurrency if args.http1 else 1
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    async with httpx.AsyncClient(
        http1=args.http1, http2=not args.http1, limits=limits, timeout=30
    ) as client:
        payload = bytes(args.payload)

        async def call() -> None:
            response = await client.post(address, content=payload)
            if response.status_code != 200 or response.content != payload:
                raise ValueError(f"echo failed: {response.status_code}")

        yield call


if __name__ == "__main__":
    sys.exit(peer_main("httpx-hypercorn", serve, connect, doc=__doc__, options=_options))
