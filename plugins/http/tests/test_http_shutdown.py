"""A server stopped while a caller holds a stream it no longer reads, and a call whose handler
never returns: the server still stops, promptly, on both loops.

The handlers are cancelled after the drain; hypercorn then cancels each connection's reader.
Before the fix a cancelled reader never told the protocol that the connection was gone, so a
handler's last (shielded) write waited for flow control that would never come, and the
server's process never exited. The server runs in its own process so that a hang is a
failure of this test, not of the whole run.
"""

from __future__ import annotations

import sys

import anyio
import pytest
import sniffio
from http_test_helpers import BOUND, http_settings
from requestplane_http.client import HttpClient
from test_http_faults import SCRIPT, _Lines

from requestplane_core import ConnectionLost, RequestPlaneError

pytestmark = pytest.mark.anyio

DRAIN = 0.5
# drain + hypercorn's graceful close (5 s) + the bounded clean-up, on a loaded machine
STOPS_WITHIN = 25.0


async def test_server_stops_with_an_unread_stream_and_a_blocked_call() -> None:
    import json

    process = await anyio.open_process(
        [sys.executable, str(SCRIPT), "0", sniffio.current_async_library(), str(DRAIN)],
        stdin=-1,
        stdout=-1,
    )
    try:
        lines = _Lines(process)
        with anyio.fail_after(BOUND):
            addresses = json.loads(await lines.readline())
        outcomes: list[BaseException | bytes] = []
        async with HttpClient(http_settings()) as client:
            stream = client.stream(addresses["flood"], b"")
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    try:
                        outcomes.append(await client.request(addresses["block"], b"x"))
                    except RequestPlaneError as exc:
                        outcomes.append(exc)

                with anyio.fail_after(BOUND):
                    tg.start_soon(call)
                    assert await lines.readline() == "started"
                    assert len(await stream.__anext__()) == 65536  # then never read again
                    assert await lines.readline() == "started"
                assert process.stdin is not None
                await process.stdin.aclose()
                with anyio.fail_after(BOUND):
                    assert await lines.readline() == "stopping"
                with anyio.move_on_after(STOPS_WITHIN) as waited:
                    await process.wait()
                assert not waited.cancelled_caught, (
                    f"the server did not stop within {STOPS_WITHIN} s of being asked "
                    "(an unread stream and a blocked call were open)"
                )
                assert process.returncode == 0
            await stream.aclose()
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], RequestPlaneError), outcomes
        assert not isinstance(outcomes[0], bytes)
        assert isinstance(outcomes[0], (ConnectionLost, RequestPlaneError))
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
