"""One client connection's table of calls in flight, resolved by its reader."""

from __future__ import annotations

import anyio

from requestplane_core import RequestPlaneError, error_from_wire
from requestplane_core.lowlevel import waiter_factory

from .call_errors import ErrorFactory, too_large_factory
from .call_states import CallState
from .connection import FrameConnection, body_bytes
from .framing import (
    CANCEL,
    CHUNK,
    END,
    ERROR,
    HEADER,
    KIND_NAMES,
    REQUEST,
    RESPONSE,
    FrameError,
    decode_error,
)

__all__ = ["ClientConnection"]


class ClientConnection:
    """The calls in flight on one connection, keyed by request id."""

    __slots__ = (
        "calls",
        "fc",
        "goodbye",
        "key",
        "max_message",
        "new_waiter",
        "next_id",
        "reason",
        "scope",
        "usable",
    )

    def __init__(self, max_message: int, key: tuple[str, int | None], fc: FrameConnection):
        self.key = key
        self.fc = fc
        self.new_waiter = waiter_factory()
        self.max_message = max_message
        self.calls: dict[int, CallState] = {}
        self.next_id = 0
        self.usable = True
        self.scope = anyio.CancelScope()
        # Why the server closed the connection (an ERROR frame for request id 0), and why
        # the client gave it up: what the calls still in flight fail with.
        self.goodbye: RequestPlaneError | None = None
        self.reason: ErrorFactory | None = None

    def add(self, call: CallState) -> int:
        calls = self.calls
        rid = self.next_id
        while True:
            rid = rid + 1 if rid < 0xFFFFFFFF else 1
            if rid not in calls:
                break
        self.next_id = rid
        calls[rid] = call
        return rid

    def cancel(self, rid: int) -> None:
        """Forget ``rid`` and tell the server to stop it (synchronous: safe while cancelled)."""
        self.calls.pop(rid, None)
        if not self.fc.closed:
            self.fc.send(HEADER.pack(0, CANCEL, rid))

    def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
        # The reader enforces every size limit (see on_oversize) before calling this.
        if kind == RESPONSE:
            call = self.calls.pop(rid, None)
            if call is not None:
                call.on_response(body_bytes(body))
        elif kind == CHUNK:
            call = self.calls.get(rid)
            if call is not None and not call.on_chunk(body_bytes(body), self.max_message):
                self.cancel(rid)
        elif kind == END:
            call = self.calls.pop(rid, None)
            if call is not None:
                call.on_end()
        elif kind == ERROR:
            code, message, remote_type = decode_error(body)
            if rid == 0:
                self.goodbye = error_from_wire(code, message, remote_type)
                return
            call = self.calls.pop(rid, None)
            if call is not None:
                call.fail(lambda: error_from_wire(code, message, remote_type))
        else:
            raise FrameError(f"unexpected frame kind {kind}")

    def on_oversize(self, kind: int, rid: int, length: int) -> None:
        if kind in (RESPONSE, CHUNK) and rid != 0:
            # Skippable: fail just that call, and stop the server sending more of it.
            call = self.calls.pop(rid, None)
            if call is not None:
                call.fail(too_large_factory(length, self.max_message))
                if kind == CHUNK:
                    self.cancel(rid)
            return
        name = KIND_NAMES.get(kind)
        if name is None:
            raise FrameError(f"the server sent an unknown frame kind {kind}")
        if kind in (REQUEST, CANCEL):
            raise FrameError(f"the server sent a {name} frame (servers never do)")
        raise FrameError(f"the server sent a {name} frame of {length} bytes, over its limit")

    def fail_all(self, error: ErrorFactory) -> None:
        self.usable = False
        self.fc.abandon()
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.fail(error)
