"""The server's answer to one request: frames written to that request's own connection."""

from __future__ import annotations

import anyio
from anyio.abc import ByteSendStream

from requestplane_core import ConnectionLost, PayloadTooLarge, RequestPlaneError

from .frames import CONNECTION_ERRORS, encode_error, encode_frame

__all__ = ["ConnectionResponder"]


class ConnectionResponder:
    """Implements :class:`requestplane_core.Responder` over one connection.

    Each frame goes out in one ``send``. A send that is cancelled half-way may have written
    part of a frame; since nothing may follow a torn frame, the connection then counts as
    broken and later sends raise :class:`ConnectionLost` (the client sees the connection end
    mid-frame, which it reports as ``ConnectionLost`` too).
    """

    def __init__(self, stream: ByteSendStream, max_message_size: int) -> None:
        self._stream = stream
        self._max = max_message_size
        self._broken = False

    async def send_response(self, payload: bytes) -> None:
        self._check_size("response", payload)
        await self._send(encode_frame("response", payload))

    async def send_chunk(self, payload: bytes) -> None:
        self._check_size("chunk", payload)
        await self._send(encode_frame("chunk", payload))

    async def send_end(self) -> None:
        await self._send(encode_frame("end"))

    async def send_error(self, error: RequestPlaneError) -> None:
        await self._send(encode_error(error))

    def _check_size(self, what: str, payload: bytes) -> None:
        if len(payload) > self._max:
            raise PayloadTooLarge(
                f"the {what} is {len(payload)} bytes; the limit is {self._max} "
                "(REQUESTPLANE_UDS_MAX_MESSAGE_SIZE)"
            )

    async def _send(self, frame: bytes) -> None:
        if self._broken:
            raise ConnectionLost("the caller closed the connection")
        try:
            await self._stream.send(frame)
        except CONNECTION_ERRORS as exc:
            self._broken = True
            raise ConnectionLost("the caller closed the connection") from exc
        except anyio.get_cancelled_exc_class():
            self._broken = True
            raise
