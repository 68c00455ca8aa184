"""The narrow interface a transport plugin implements, and nothing more.

A transport is a :class:`TransportSpec`: a name, a settings class, and two factories that build
a :class:`TransportServer` and a :class:`TransportClient` from those settings. The rest of
requestplane (and every user) only ever sees these abstract types: no socket, connection or
protocol object of a transport leaks past them. Every type a transport touches is here: what
its server is given to hand requests to (:class:`Dispatch`), what it answers through
(:class:`Responder`), and :class:`Pending`. This module imports nothing else of the core but
addresses, requests and errors: the contract sits at the bottom of the house.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from .address import Address
from .errors import RequestPlaneError
from .request import Request

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "Capabilities",
    "ClientStats",
    "Dispatch",
    "Pending",
    "Responder",
    "ResponseStream",
    "TransportClient",
    "TransportServer",
    "TransportSpec",
]

S = TypeVar("S")


class Responder(Protocol):
    """How the dispatcher answers one request; the transport implements it.

    The dispatcher calls exactly one of: :meth:`send_response`; :meth:`send_error`; or
    :meth:`send_chunk` any number of times followed by :meth:`send_end` or :meth:`send_error`.
    A method raises :class:`ConnectionLost` when the caller is gone (nothing more is sent) and
    :class:`~requestplane_core.errors.PayloadTooLarge` for a response over the limit (the
    dispatcher then sends that error instead).
    """

    async def send_response(self, payload: bytes) -> None: ...

    async def send_chunk(self, payload: bytes) -> None: ...

    async def send_end(self) -> None: ...

    async def send_error(self, error: RequestPlaneError) -> None: ...


_NOT_CALLED: Any = object()


class Pending:
    """A request :meth:`Dispatch.answer_now` could not answer at once: pass it on to
    :meth:`Dispatch.handle`, in a task of its own."""

    __slots__ = ("result",)

    def __init__(self, result: object = _NOT_CALLED) -> None:
        # What a synchronous handler returned that still has to be awaited or streamed; the
        # handler is not called a second time.
        self.result = result


_LATER = Pending()


class Dispatch(Protocol):
    """What a :class:`TransportServer` is given to hand its requests to (the core's
    dispatcher): the semantics of every request (lookup, admission, deadlines, drain, error
    mapping) live behind it, so that a transport only moves bytes."""

    def answer_now(self, request: Request) -> bytes | RequestPlaneError | Pending:
        """The outcome of ``request`` if it is known without awaiting: a synchronous
        handler's answer (bytes) or a refusal (an error) to send from where the request was
        read; or :class:`Pending`, for :meth:`handle` in a task of its own."""
        ...

    def handle(
        self,
        request: Request,
        responder: Responder,
        scope: anyio.CancelScope | None = None,
        pending: Pending = _LATER,
    ) -> Coroutine[Any, Any, None]:
        """Run ``request`` to exactly one outcome, sent through ``responder`` (await it).
        ``scope`` is the cancel scope the transport cancels when its caller cancels."""
        ...


def _backends(value: Iterable[str]) -> frozenset[str]:
    # A typed converter: with ``converter=frozenset`` mypy derives the parameter type
    # ``Iterable[_T_co]`` and rejects every call that passes ``backends=`` under --strict.
    return frozenset(value)


@attrs.frozen
class Capabilities:
    """What a transport can do. The conformance kit marks cases it cannot as not applicable."""

    streaming: bool = True
    cancellation: bool = True
    deadlines: bool = True
    backends: frozenset[str] = attrs.field(
        default=frozenset({"asyncio", "trio"}), converter=_backends
    )


@attrs.frozen
class TransportSpec(Generic[S]):
    """One transport, as a plugin provides it through ``requestplane_transports``.

    ``server`` and ``client`` are called with the loaded settings (an instance of
    ``settings``); they should import heavy dependencies lazily so that listing transports
    stays cheap. ``schemes`` are the address schemes the transport's client accepts (default:
    its name), so that a caller holding only an address can pick the transport.
    """

    name: str
    description: str
    settings: type[S]
    server: Callable[[S], TransportServer]
    client: Callable[[S], TransportClient]
    capabilities: Capabilities = Capabilities()
    schemes: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def address_schemes(self) -> tuple[str, ...]:
        return self.schemes or (self.name,)


@attrs.define
class ClientStats:
    """Counters a client keeps; cheap enough to update on every request.

    ``requests`` counts unary calls and ``streams`` streamed calls; ``errors`` the calls that
    ended in an error, once per call (a failed stream iterated again counts nothing more);
    ``bytes_sent`` / ``bytes_received`` count payload bytes (request payloads once they
    passed the client's own checks, response payloads and chunks as received), not framing;
    ``open_connections`` is a gauge. The conformance suite holds every transport to this.
    """

    requests: int = 0
    streams: int = 0
    errors: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    open_connections: int = 0

    def snapshot(self) -> dict[str, int]:
        return attrs.asdict(self)


class ResponseStream(abc.ABC):
    """The chunks of one streamed response, in order, as they arrive.

    Iterate it to the end, or leave early with :meth:`aclose` (or ``async with``), which
    cancels the handler on the server. A stream that breaks raises the typed error instead of
    ending early: a short stream is never mistaken for a complete one.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> bytes: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop receiving; if the stream has not ended, cancel it on the server."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class TransportClient(abc.ABC):
    """The calling half of a transport.

    A client may run background work (reading connections); it does so in the task group
    given to :meth:`start`. ``async with client:`` gives it a task group of its own.
    """

    stats: ClientStats

    @abc.abstractmethod
    def start(self, task_group: TaskGroup) -> None:
        """Attach to ``task_group`` for later background tasks; called once before use."""

    @abc.abstractmethod
    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Send one request and return its response.

        ``timeout`` (seconds) bounds the whole call and travels to the server as the handler's
        deadline; ``None`` uses the transport's configured request timeout. Calling a
        streaming endpoint returns its chunks joined.
        """

    @abc.abstractmethod
    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        """Send one request and return its response chunks as they arrive.

        Calling a unary endpoint yields its response as a single chunk.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Fail what is still in flight with ``ConnectionLost`` and close every connection."""

    def endpoint_of(self, address: Address) -> str:
        """The endpoint name ``address`` designates, for instrumentation and logs.

        The default is the address's last path segment; a transport whose addresses encode
        endpoints otherwise (NATS subjects) overrides it.
        """
        return address.endpoint

    async def __aenter__(self) -> Self:
        self._owned_tg = anyio.create_task_group()
        await self._owned_tg.__aenter__()
        self.start(self._owned_tg)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            self._owned_tg.cancel_scope.cancel()
            # Not the body's exception: handed to the task group it would come out wrapped in
            # an ExceptionGroup; returning None re-raises it as it is.
            await self._owned_tg.__aexit__(None, None, None)


class TransportServer(abc.ABC):
    """The listening half of a transport: one instance serves every endpoint of a process.

    The core drives it: :meth:`start`, then :meth:`endpoint_added` / :meth:`endpoint_removed`
    as endpoints come and go, then :meth:`aclose` after the dispatcher has drained. Every
    request it receives goes to :meth:`Dispatch.handle`, which owns lookup, admission,
    deadlines, drain and error mapping, so a transport only moves bytes.
    """

    @abc.abstractmethod
    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        """Bind and begin serving in ``task_group``; return once :meth:`address` is final."""

    @abc.abstractmethod
    def address(self, endpoint: str) -> Address:
        """The address callers use to reach ``endpoint`` on this server."""

    def instance_address(self, endpoint: str) -> Address:
        """The address that reaches ``endpoint`` on this server alone, which discovery
        publishes. The default is :meth:`address`; a transport whose addresses may reach any
        of several servers (a NATS queue group) returns its per-server one."""
        return self.address(endpoint)

    async def endpoint_added(self, endpoint: str) -> None:  # noqa: B027 (optional hook)
        """Called after ``endpoint`` is registered (e.g. to subscribe to its subject)."""

    async def endpoint_removed(self, endpoint: str) -> None:  # noqa: B027 (optional hook)
        """Called after ``endpoint`` is unregistered and its requests have drained."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop accepting, flush queued responses and close every connection."""

    def health_details(self) -> Mapping[str, Any]:
        """Transport-specific facts for :meth:`Server.health` (bound address, connections)."""
        return {}
