"""The running event loop's own clock, read without anyio's per-call backend lookup."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import sniffio

__all__ = ["loop_clock"]


def loop_clock() -> Callable[[], float]:
    """The clock :func:`anyio.current_time` reads, for the running event loop: ``loop.time``
    on asyncio (and uvloop), ``trio.current_time`` on trio. ``anyio.current_time()`` looks
    the backend up on every call, which costs more than the clock itself on a per-request
    path; resolve this once per loop and call it instead."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    return asyncio.get_running_loop().time
