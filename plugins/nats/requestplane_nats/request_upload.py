"""A request larger than the broker's max_payload, arriving in parts (server side).

The caller sends the first part to the endpoint subject with ``Rp-L: <total bytes>``; the
instance that gets it answers with its per-instance subject (``Rp-U``), and the caller sends
the other parts there, each with ``Rp-P: <offset>``. Parts are kept here until the request is
whole. Memory is bounded by ``max_message_size`` per upload, and an upload that stops (its
caller died) is dropped once it had no part for ``IDLE`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from requestplane_core import PayloadTooLarge, ProtocolError, Request, RequestPlaneError

__all__ = ["IDLE", "Uploads"]

IDLE = 10.0


@attrs.define
class _Upload:
    endpoint: str
    headers: dict[str, str]
    deadline: float | None
    total: int
    parts: list[bytes]
    size: int
    last: float  # the clock at its latest part


class Uploads:
    """The requests being uploaded to this server, by reply subject."""

    def __init__(self, max_size: int, clock: Callable[[], float]) -> None:
        self._max_size = max_size
        self._clock = clock
        self._uploads: dict[str, _Upload] = {}

    def start(
        self,
        reply: str,
        request: Request,
        total: str,
    ) -> RequestPlaneError | None:
        """The first part of a request (its payload so far in ``request``); an error to
        answer with if it cannot be taken."""
        try:
            size = int(total)
        except ValueError:
            return ProtocolError("a request's first part carries a malformed length")
        if size > self._max_size:
            return PayloadTooLarge(
                f"request of {size} bytes exceeds the NATS transport's max_message_size of "
                f"{self._max_size}"
            )
        if size <= len(request.payload):
            return ProtocolError("a request's first part is as long as the whole")
        self._uploads[reply] = _Upload(
            request.endpoint,
            dict(request.headers),
            request.deadline,
            size,
            [request.payload],
            len(request.payload),
            self._clock(),
        )
        return None

    def add(self, reply: str, offset: str, data: bytes) -> Request | RequestPlaneError | None:
        """A later part: the whole request once it is complete, an error if the parts do not
        add up, None while parts are missing (or the upload was dropped)."""
        upload = self._uploads.get(reply)
        if upload is None:
            return None  # cancelled or dropped: the caller learns it from its deadline
        if offset != str(upload.size) or upload.size + len(data) > upload.total:
            del self._uploads[reply]
            return ProtocolError("the parts of a large request do not add up")
        upload.parts.append(data)
        upload.size += len(data)
        upload.last = self._clock()
        if upload.size < upload.total:
            return None
        del self._uploads[reply]
        payload = b"".join(upload.parts)
        return Request(upload.endpoint, payload, upload.headers, upload.deadline)

    def drop(self, reply: str) -> None:
        self._uploads.pop(reply, None)

    def sweep(self) -> None:
        """Drop the uploads that had no part for ``IDLE`` seconds."""
        now = self._clock()
        stale = [r for r, u in self._uploads.items() if now - u.last > IDLE]
        for reply in stale:
            del self._uploads[reply]
