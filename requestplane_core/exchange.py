"""The one primitive a transport's client implements: a call's answer, event by event.

:class:`~requestplane_core.exchange_client.ExchangeClient` writes ``request()`` and
``stream()`` once over it; a transport only opens an :class:`Exchange` per call (sending the
request) and hands over what comes back.
"""

from __future__ import annotations

import abc
import enum

__all__ = ["Exchange", "ExchangeEvent"]


class ExchangeEvent(enum.Enum):
    """What :meth:`Exchange.receive` got: a unary answer, one chunk of a streamed answer, or
    the end of a streamed answer (whose payload is empty)."""

    RESPONSE = "response"
    CHUNK = "chunk"
    END = "end"


class Exchange(abc.ABC):
    """One call in flight, from the request sent to the last event of its answer.

    An error answer (or a lost connection, an answer over the limit) is raised by
    :meth:`receive` as its typed :class:`~requestplane_core.errors.RequestPlaneError`. After
    RESPONSE, END or an error nothing more is received; the client calls :meth:`aclose`
    exactly once either way.
    """

    __slots__ = ()

    @abc.abstractmethod
    async def receive(self) -> tuple[ExchangeEvent, bytes]:
        """The next event and its payload."""

    def receive_ready(self) -> tuple[ExchangeEvent, bytes] | None:
        """The next event if it has already arrived, else None (then :meth:`receive` waits
        for it): a stream reading chunks that are already here need not await. The default
        never has one ready."""
        return None

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the call; if its answer has not ended, cancel it on the server. Safe to
        call again, and while cancelled."""

    def abandon(self) -> None:  # noqa: B027 (optional hook)
        """Cancel the call on the server without awaiting, where awaiting is impossible (a
        stream dropped without ``aclose()``, collected by ``__del__``). The default does
        nothing: a transport whose cancellation needs I/O relies on :meth:`aclose`."""
