"""The listening half: one Unix socket, one connection per request."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import (
    Address,
    ConfigError,
    Dispatch,
    ProtocolError,
    Request,
    TransportServer,
)

from .addressing import address_for
from .frames import (
    CONNECTION_ERRORS,
    Frame,
    FrameTooLarge,
    discard,
    encode_error,
    read_frame,
)
from .responder import ConnectionResponder
from .settings import UdsSettings

__all__ = ["UdsServer"]

log = logging.getLogger("requestplane.uds")

#: Seconds aclose() waits for clients to hang up after their last frame.
CLOSE_GRACE = 1.0


class UdsServer(TransportServer):
    def __init__(self, settings: UdsSettings) -> None:
        self._settings = settings
        self._dispatcher: Dispatch | None = None
        self._path: Path | None = None
        self._private_dir: Path | None = None
        self._accepting = anyio.CancelScope()
        self._connections_scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._idle = anyio.Event()
        self._connections = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        self._dispatcher = dispatcher
        listener = await self._listen()
        await task_group.start(self._serve, listener)

    async def _listen(self) -> SocketListener:
        if self._settings.path is None:
            # A directory only this user can enter: nobody else can connect to the socket.
            self._private_dir = Path(tempfile.mkdtemp(prefix="requestplane-uds-"))
            path = self._private_dir / "server.sock"
        else:
            path = self._settings.path.absolute()
            await _refuse_if_in_use(path)
        try:
            listener = await anyio.create_unix_listener(path)
        except OSError as exc:
            self._remove_private_dir()
            raise ConfigError(
                f"REQUESTPLANE_UDS_PATH={str(path)!r}: cannot listen there: {exc.strerror or exc}"
            ) from None
        self._path = path
        return listener

    async def _serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with self._connections_scope:
                async with anyio.create_task_group() as connections:
                    task_status.started()
                    with self._accepting:
                        async with listener:
                            # serve() rather than a loop on accept(): every anyio listener
                            # has it, including the MultiListener of create_tcp_listener().
                            await listener.serve(self._serve_connection, connections)
        finally:
            self._remove_socket()
            self._stopped.set()

    def address(self, endpoint: str) -> Address:
        assert self._path is not None, "start() first"
        return address_for(self._path, endpoint)

    async def aclose(self) -> None:
        # The dispatcher has drained: every request has had its outcome sent, and its client
        # hangs up as soon as it has read it. Connections still open after a grace period
        # belong to clients that do not (or never sent a request): those are cut.
        self._accepting.cancel()
        if self._path is None:
            return
        if self._connections:
            with anyio.move_on_after(CLOSE_GRACE):
                await self._idle.wait()
        self._connections_scope.cancel()
        await self._stopped.wait()

    def health_details(self) -> Mapping[str, Any]:
        return {"path": str(self._path), "connections": self._connections}

    def _remove_socket(self) -> None:
        if self._path is not None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                pass
        self._remove_private_dir()

    def _remove_private_dir(self) -> None:
        if self._private_dir is not None:
            try:
                self._private_dir.rmdir()
            except OSError:
                pass  # someone put files there; leave them
            self._private_dir = None

    # -- one connection, one request ----------------------------------------------------------

    async def _serve_connection(self, stream: SocketStream) -> None:
        assert self._dispatcher is not None
        self._connections += 1
        try:
            async with stream:
                reader = BufferedByteReceiveStream(stream)
                responder = ConnectionResponder(stream, self._settings.max_message_size)
                request = await self._read_request(reader, stream)
                if request is None:
                    return
                scope = anyio.CancelScope()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_on_hangup, reader, scope)
                    await self._dispatcher.handle(request, responder, scope)
                    # The watcher is not cancelled: the client hangs up once it has read the
                    # last frame, which ends it. (Cancelling a pending read on a Unix socket
                    # on asyncio races with that hang-up inside anyio, see the README.)
        except CONNECTION_ERRORS:
            pass  # the caller went away; the dispatcher already knows through the scope
        finally:
            self._connections -= 1
            if not self._connections and self._accepting.cancel_called:
                self._idle.set()

    async def _read_request(
        self, reader: BufferedByteReceiveStream, stream: SocketStream
    ) -> Request | None:
        """The connection's request, or ``None`` after answering a bad one with an error."""
        try:
            frame = await read_frame(reader, self._settings.max_message_size)
            return _request_from(frame)
        except FrameTooLarge as exc:
            await stream.send(encode_error(exc))
            # Read the rest of the frame away so the client can finish sending and read our
            # error, rather than failing its write with a reset connection.
            await discard(reader, exc.size)
        except ProtocolError as exc:
            log.warning("closing a connection that sent a malformed request: %s", exc)
            await stream.send(encode_error(exc))
        except anyio.IncompleteRead:
            pass  # connected and left without a whole request: nothing to answer
        return None


def _request_from(frame: Frame) -> Request:
    header = frame.header
    endpoint, headers, timeout = (
        header.get("endpoint"),
        header.get("headers"),
        header.get("timeout"),
    )
    if frame.kind != "request" or not isinstance(endpoint, str):
        raise ProtocolError(f"expected a request frame, got {frame.kind!r}")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ProtocolError("request headers must map strings to strings")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or math.isnan(timeout)
    ):
        raise ProtocolError(f"request timeout {timeout!r} is not a number of seconds")
    deadline = None if timeout is None else anyio.current_time() + max(timeout, 0.0)
    return Request(endpoint, frame.payload, headers, deadline)


async def _cancel_on_hangup(reader: BufferedByteReceiveStream, scope: anyio.CancelScope) -> None:
    """A client sends nothing after its request: whatever comes next (normally the end of
    the stream, when it closes the connection) means it no longer wants the answer."""
    try:
        await reader.receive()
    except CONNECTION_ERRORS:
        pass
    scope.cancel()


async def _refuse_if_in_use(path: Path) -> None:
    """anyio replaces an existing socket file; refuse instead if a server still answers
    there, so a second server cannot silently steal a live one's address."""
    if not await anyio.Path(path).is_socket():
        return
    try:
        stream = await anyio.connect_unix(path)
    except OSError:
        return  # a stale file left by a process that died: safe to replace
    await stream.aclose()
    raise ConfigError(
        f"REQUESTPLANE_UDS_PATH={str(path)!r}: another server is listening on that socket"
    )
