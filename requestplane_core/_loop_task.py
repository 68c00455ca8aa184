"""Tasks owned by the running event loop itself rather than by a task group.

The shared server must outlive whichever manager happened to start it, yet die with its event
loop; that is exactly the lifetime of a trio system task or an asyncio task the loop cancels
at shutdown. This is the one place requestplane steps outside structured concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sniffio

_asyncio_tasks: set[asyncio.Task[None]] = set()


def spawn_loop_task(fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``fn()`` until it returns or the event loop ends. ``fn`` must not raise."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(fn)
        return

    async def run() -> None:
        await fn()

    task = asyncio.get_running_loop().create_task(run())
    _asyncio_tasks.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_asyncio_tasks.discard)
