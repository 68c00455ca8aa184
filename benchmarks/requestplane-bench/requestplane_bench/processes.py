"""The parent's side of the line protocol: a child process that reports in JSON lines.

Standard error is kept (its tail) to explain a child that failed; closing standard input is
how a child is asked to stop, and one that does not is killed.
"""

from __future__ import annotations

import collections
import json
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["Child", "open_child"]

_MAX_LINE = 1 << 20
_TAIL_LINES = 12


class Child:
    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_done = anyio.Event()

    async def keep_stderr_tail(self) -> None:
        assert self.process.stderr is not None
        try:
            async for data in self.process.stderr:
                self._stderr_tail.append(data.decode(errors="replace"))
        finally:
            self._stderr_done.set()

    async def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON object the child printed, or ``None`` at end of output or after
        ``timeout`` seconds of silence. Lines that are not JSON objects are skipped."""
        with anyio.move_on_after(timeout):
            while True:
                try:
                    line = await self._stdout.receive_until(b"\n", _MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
                    return None
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    return event
        return None

    async def why(self, what: str, grace: float = 2.0) -> str:
        """``what`` explained by the child's exit status and the tail of its standard error
        (waiting ``grace`` seconds for a dying child to finish both)."""
        with anyio.move_on_after(grace):
            await self.process.wait()
            await self._stderr_done.wait()
        code = self.process.returncode
        status = "still running" if code is None else f"exit status {code}"
        lines = "".join(self._stderr_tail).strip().splitlines()[-_TAIL_LINES:]
        tail = "\n".join(lines)
        return f"{what} ({status})" + (f":\n{tail}" if tail else "")


@asynccontextmanager
async def open_child(
    argv: Sequence[str], env: Mapping[str, str], stop_timeout: float = 10.0
) -> AsyncIterator[Child]:
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
    )
    child = Child(process)
    async with anyio.create_task_group() as tg:
        tg.start_soon(child.keep_stderr_tail)
        try:
            yield child
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process, stop_timeout)
                tg.cancel_scope.cancel()


async def _stop(process: Process, timeout: float) -> None:
    if process.stdin is not None:
        try:
            await process.stdin.aclose()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
    with anyio.move_on_after(timeout):
        await process.wait()
        return
    process.kill()
    await process.wait()
