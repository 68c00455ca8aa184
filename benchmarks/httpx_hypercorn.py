"""httpx against hypercorn over h2c (HTTP/2 without TLS, prior knowledge): POST /echo.

The stack a user would reach for to do request/reply over HTTP/2 in Python: an ASGI app
that returns the body, one httpx.AsyncClient with http2 (all requests multiplexed on its
connection).

``--http1`` uses HTTP/1.1 with a pool of one connection per concurrent request instead
(httpx's HTTP/2 client slows down as more requests share its connection). The server is
``_hypercorn_echo.py``, the one ``benchmarks/http_bench_client.py`` measures against too.

    python benchmarks/httpx_hypercorn.py [--http1] [--table]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
from _harness import peer_main
from _hypercorn_echo import serve_echo
from requestplane_bench.load import Call


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--http1", action="store_true", help="HTTP/1.1, a connection pool")


def serve(args: argparse.Namespace) -> AbstractAsyncContextManager[str]:
    return serve_echo()


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
