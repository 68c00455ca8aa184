"""Every reach into the private parts of anyio, the tcp transport's one dependency with any.

anyio's streams offer no synchronous write and read only with a pause and a resume per call
(see ``socket_writer.py`` and ``protocol_reader.py`` for what that costs). Both fast paths
need the asyncio transport under anyio's plain asyncio ``SocketStream``, which anyio keeps
private. What is reached, tested with anyio 4.16.0 (pinned to its series in pyproject.toml):

- ``anyio._backends._asyncio.SocketStream``: the class itself (recognised by module and
  name), and its instance attributes ``_transport``, ``_protocol`` and ``_closed``;
- ``anyio._backends._asyncio.StreamProtocol`` (the ``_protocol``): ``read_queue``,
  ``read_event``, ``is_at_eof``, ``exception``, and the callbacks ``eof_received``,
  ``connection_lost``, ``pause_writing``, ``resume_writing``;
- ``anyio._backends._trio.SocketStream``: recognised by module and name (its socket is then
  taken through the public ``SocketAttribute.raw_socket``).

Each reach is guarded: a stream that is not exactly that, or an anyio without these, gets
``None`` here, and the connection reads with ``receive()`` and writes from its writer task
only: slower, never wrong. :func:`missing_private_reaches` lists what the installed anyio
lacks; ``tests/test_tcp_compat.py`` fails on any of it, so that an upgrade fails loudly in
the tests rather than silently slow.
"""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any, Literal

from anyio.abc import ByteStream

__all__ = [
    "AsyncioStreamParts",
    "asyncio_stream_parts",
    "asyncio_transport",
    "closed_by_anyio",
    "missing_private_reaches",
    "protocol_error",
    "socket_stream_backend",
    "unread_from_protocol",
    "unread_to_protocol",
]

_ASYNCIO = "anyio._backends._asyncio"
_TRIO = "anyio._backends._trio"
_PROTOCOL_CALLBACKS = ("eof_received", "connection_lost", "pause_writing", "resume_writing")


def socket_stream_backend(stream: ByteStream) -> Literal["asyncio", "trio"] | None:
    """The backend of ``stream`` if it is anyio's own plain socket stream (no TLS, no
    wrapper), else None."""
    cls = type(stream)
    if cls.__name__ != "SocketStream":
        return None
    if cls.__module__ == _ASYNCIO:
        return "asyncio"
    if cls.__module__ == _TRIO:
        return "trio"
    return None


def asyncio_transport(stream: ByteStream) -> Any | None:
    """The asyncio (or uvloop) transport under anyio's plain asyncio socket stream."""
    if socket_stream_backend(stream) != "asyncio":
        return None
    return getattr(stream, "_transport", None)


class AsyncioStreamParts:
    """The transport and anyio's protocol under an open asyncio socket stream, checked to
    have what ``protocol_reader.py`` uses."""

    __slots__ = ("protocol", "transport")

    def __init__(self, transport: Any, protocol: Any) -> None:
        self.transport = transport
        self.protocol = protocol


def asyncio_stream_parts(stream: ByteStream) -> AsyncioStreamParts | None:
    """The parts of ``stream`` if it is anyio's plain, open asyncio TCP stream whose
    protocol still holds nothing to report (no end of stream, no error), else None."""
    transport = asyncio_transport(stream)
    original: Any = getattr(stream, "_protocol", None)
    try:
        # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
        if transport is None or transport.get_protocol() is not original:
            return None
        if transport.get_extra_info("sslcontext") is not None or transport.is_closing():
            return None
        for name in ("set_protocol", "pause_reading", "resume_reading"):
            getattr(transport, name)
        if not isinstance(original.read_queue, deque):
            return None
        for name in ("is_set", "set", "clear"):
            getattr(original.read_event, name)
        for name in _PROTOCOL_CALLBACKS:
            getattr(original, name)
        if original.is_at_eof or original.exception is not None:
            return None  # let receive() report it as it always does
        if getattr(stream, "_closed", None) is not False:
            return None
    except AttributeError:
        return None
    return AsyncioStreamParts(transport, original)


def unread_from_protocol(protocol: Any) -> list[bytes]:
    """Take what anyio's protocol read and did not hand out yet."""
    unread = list(protocol.read_queue)
    protocol.read_queue.clear()
    protocol.read_event.clear()
    return unread


def unread_to_protocol(protocol: Any, unread: deque[bytes]) -> None:
    """Give back to anyio's protocol what was read and not consumed, for ``receive()``."""
    protocol.read_queue.extend(unread)
    protocol.read_event.set()


def closed_by_anyio(stream: ByteStream) -> bool:
    """Whether anyio's stream was closed from this side (``aclose()``)."""
    return bool(getattr(stream, "_closed", False))


def protocol_error(protocol: Any) -> BaseException | None:
    """The error that broke the connection, as anyio's protocol recorded it."""
    error: BaseException | None = protocol.exception
    return error


def missing_private_reaches() -> list[str]:
    """What the reaches of this module look for and the installed anyio lacks (empty when
    both fast paths can be taken)."""
    import importlib

    missing: list[str] = []
    for module_name in (_ASYNCIO, _TRIO):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not isinstance(getattr(module, "SocketStream", None), type):
            missing.append(f"{module_name}.SocketStream")
    try:
        asyncio_backend = importlib.import_module(_ASYNCIO)
    except ImportError:
        return missing
    stream_cls = getattr(asyncio_backend, "SocketStream", None)
    protocol_cls = getattr(asyncio_backend, "StreamProtocol", None)
    if stream_cls is not None:
        init = _source(stream_cls.__init__)
        missing += [
            f"{_ASYNCIO}.SocketStream().{name}"
            for name in ("_transport", "_protocol", "_closed")
            if f"self.{name} =" not in init
        ]
    if protocol_cls is None:
        missing.append(f"{_ASYNCIO}.StreamProtocol")
    else:
        made = _source(protocol_cls.connection_made)
        missing += [
            f"{_ASYNCIO}.StreamProtocol().{name}"
            for name in ("read_queue", "read_event")
            if f"self.{name} =" not in made
        ]
        missing += [
            f"{_ASYNCIO}.StreamProtocol.{name}"
            for name in ("is_at_eof", "exception", *_PROTOCOL_CALLBACKS)
            if not hasattr(protocol_cls, name)
        ]
    return missing


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
