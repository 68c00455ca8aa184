"""One request/response exchange as the client sees it, whatever the HTTP version."""

from __future__ import annotations

import abc

__all__ = ["Exchange", "RetryElsewhere"]


class RetryElsewhere(Exception):
    """The server provably did not process the request (refused stream, or a stream above a
    GOAWAY's last stream id); the client sends it again on another connection."""


class Exchange(abc.ABC):
    """The response half of one request, read by the calling task.

    Methods raise typed requestplane errors (``ConnectionLost`` and friends) or
    :class:`RetryElsewhere`; :meth:`close` must always be called and aborts the exchange
    (which cancels the handler on the server) if the response was not read to its end.
    """

    status: int
    content_type: bytes
    error_header: bool

    @abc.abstractmethod
    async def wait_headers(self) -> None:
        """Until the response status and headers are known."""

    @abc.abstractmethod
    async def read_all(self, limit: int) -> bytes:
        """The rest of the body; ``PayloadTooLarge`` once it passes ``limit`` bytes."""

    @abc.abstractmethod
    async def read_some(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the exchange; aborts it on the server unless it completed."""
