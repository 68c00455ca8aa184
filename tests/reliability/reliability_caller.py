"""A caller process the reliability scenarios kill mid-stream: ``python reliability_caller.py
BACKEND ADDRESS TIMEOUT``, configured by the environment like any requestplane user.

Streams ``ADDRESS`` and prints ``streaming`` once the first chunk is in, then keeps reading
until it is killed.
"""

from __future__ import annotations

import sys

import anyio

from requestplane_core import Address, RequestPlane


async def main(address: str, timeout: float) -> None:
    async with RequestPlane(Address.parse(address).scheme) as plane:
        client = plane.client()
        first = True
        async with client.stream(address, b"", timeout=timeout) as chunks:
            async for _ in chunks:
                if first:
                    first = False
                    sys.stdout.write("streaming\n")
                    sys.stdout.flush()


if __name__ == "__main__":
    anyio.run(main, sys.argv[2], float(sys.argv[3]), backend=sys.argv[1])
