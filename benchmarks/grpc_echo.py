"""grpcio's asyncio API: a unary echo of raw bytes (generic handler, no protobuf codegen).

python benchmarks/grpc_echo.py [--table]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from _harness import peer_main
from requestplane_bench.load import Call

METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


@asynccontextmanager
async def serve(args: argparse.Namespace) -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=1)


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(METHOD)  # no serializers: bytes in, bytes out
        payload = bytes(args.payload)

        async def call() -> None:
            if await echo(payload, timeout=30) != payload:
                raise ValueError("echo mismatch")

        yield call


if __name__ == "__main__":
    sys.exit(peer_main("grpcio", serve, connect, doc=__doc__))
