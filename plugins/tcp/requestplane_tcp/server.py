"""The TCP server: one listener for every endpoint of a process, one task per request."""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup

from requestplane_core import (
    Address,
    ConfigError,
    ConnectionLost,
    Dispatch,
    PayloadTooLarge,
    Pending,
    ProtocolError,
    Request,
    RequestPlaneError,
    TransportServer,
    loop_clock,
)
from requestplane_core.lowlevel import RequestTasks, Spawn, cancel_scope_factory, request_tasks

from .connection import FrameConnection, close_quietly
from .framing import (
    CANCEL,
    CHUNK,
    END,
    HEADER,
    KIND_NAMES,
    PREAMBLE,
    REQUEST,
    RESPONSE,
    FrameError,
    decode_request,
    encode_error,
    frame_limits,
    request_body_limit,
)
from .settings import TcpSettings
from .tls import check_tls_settings, server_context
from .tls_stream import tls_handshake

__all__ = ["TcpServer"]

log = logging.getLogger("requestplane.tcp")

_WILDCARDS = {"0.0.0.0": socket.AF_INET, "::": socket.AF_INET6, "": socket.AF_INET}
_CLOSE_TIMEOUT = 5.0  # seconds aclose() gives connections to flush their queued frames
_GOODBYE_TIMEOUT = 1.0  # seconds a misbehaving peer gets to receive why we close
_CHUNKS_PER_YIELD = 16
# Idle and stalled connections are looked for this many times per (shorter) timeout: a
# coarse periodic check costs nothing per request, unlike a clock read or a timer per frame.
_CHECKS_PER_TIMEOUT = 4
_ACCEPT_RETRY = 0.1  # seconds between tries to accept while accepting fails (no fds left)


class TcpServer(TransportServer):
    def __init__(self, settings: TcpSettings) -> None:
        check_tls_settings(settings)
        self._settings = settings
        self._ssl = server_context(settings) if settings.tls else None
        self._max_message = settings.max_message_size
        self._limits = frame_limits(
            {REQUEST: request_body_limit(settings.max_message_size), CANCEL: 0}
        )
        self._dispatcher: Dispatch | None = None
        self._answer_now: Callable[[Request], bytes | RequestPlaneError | Pending] = _not_started
        self._tg: TaskGroup | None = None
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._clock: Callable[[], float] = anyio.current_time
        self._listener: Any = None
        self._accept_scope = anyio.CancelScope()
        self._port = 0
        self._advertise = settings.host
        self._connections: set[_ServerConnection] = set()
        self._closing = False
        self._all_closed: anyio.Event | None = None
        self._idle_timeout = settings.idle_timeout
        self._frame_timeout = settings.frame_timeout
        self._check_scope = anyio.CancelScope()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        self._dispatcher = dispatcher
        self._answer_now = dispatcher.answer_now
        self._tg = task_group
        self._new_scope = cancel_scope_factory()
        self._clock = loop_clock()
        host = self._settings.host
        try:
            self._listener = await anyio.create_tcp_listener(
                local_host=host, local_port=self._settings.port
            )
        except OSError as exc:
            # A configuration problem (port in use, address not on this machine): ConfigError
            # reaches the caller of serve() as it is, not wrapped in an ExceptionGroup.
            raise ConfigError(_listen_failure(host, self._settings.port, exc)) from exc
        self._port = self._listener.extra(SocketAttribute.local_port)
        self._advertise = await _advertise_host(self._settings)
        for listener in self._listener.listeners:
            task_group.start_soon(self._accept_loop, listener)
        if self._idle_timeout is not None or self._frame_timeout is not None:
            task_group.start_soon(self._check_loop)
        log.info(
            "tcp server listening on %s port %d%s (advertised as %s)",
            host,
            self._port,
            " with TLS" if self._ssl else "",
            self._advertise,
        )

    def address(self, endpoint: str) -> Address:
        return Address("tcp", self._advertise, self._port, endpoint)

    def health_details(self) -> Mapping[str, Any]:
        return {
            "host": self._settings.host,
            "port": self._port,
            "advertise_host": self._advertise,
            "connections": len(self._connections),
            "tls": self._ssl is not None,
        }

    async def aclose(self) -> None:
        self._closing = True
        self._accept_scope.cancel()
        self._check_scope.cancel()
        if self._listener is not None:
            await self._listener.aclose()
        if self._connections:
            self._all_closed = anyio.Event()
            for conn in list(self._connections):
                conn.fc.close()  # the writer flushes what is queued, then the task ends
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                await self._all_closed.wait()
            for conn in list(self._connections):
                conn.scope.cancel()

    # -- connections -----------------------------------------------------------------------

    async def _accept_loop(self, listener: Any) -> None:
        assert self._tg is not None
        failed = 0  # tries that failed in a row
        with self._accept_scope:
            while True:
                try:
                    stream = await listener.accept()
                except anyio.ClosedResourceError:
                    return
                except (OSError, anyio.BrokenResourceError) as exc:
                    # Out of file descriptors and the like (anyio on trio wraps the OSError
                    # in BrokenResourceError; ending the loop there stopped accepting for
                    # good): keep serving the connections we have and try again shortly
                    # instead of spinning or dying. Logged once per burst: a line every try
                    # would flood the log while it lasts.
                    error = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
                    if self._closing or not isinstance(error, OSError):
                        return
                    if not failed:
                        log.warning(
                            "tcp server cannot accept connections: %s; it keeps serving its "
                            "open ones and tries again every %ss (connections closing, e.g. "
                            "idle ones after REQUESTPLANE_TCP_IDLE_TIMEOUT, free descriptors)",
                            error.strerror or error,
                            _ACCEPT_RETRY,
                        )
                    failed += 1
                    await anyio.sleep(_ACCEPT_RETRY)
                    continue
                if failed:
                    log.warning(
                        "tcp server accepts connections again (after %d failed tries)", failed
                    )
                    failed = 0
                if self._closing:
                    await stream.aclose()
                    return
                self._tg.start_soon(self._serve_connection, stream)

    async def _check_loop(self) -> None:
        """Close idle connections, and those stalled in the middle of a frame, now and then."""
        period = min(t for t in (self._idle_timeout, self._frame_timeout) if t is not None)
        period /= _CHECKS_PER_TIMEOUT
        with self._check_scope:
            while True:
                await anyio.sleep(period)
                now = self._clock()
                for conn in list(self._connections):
                    conn.check(now, self._idle_timeout, self._frame_timeout)

    async def _serve_connection(self, stream: ByteStream) -> None:
        peer = _peer_name(stream)
        timeout = self._settings.connect_timeout
        if self._ssl is not None:
            try:
                with anyio.fail_after(timeout):
                    stream = await tls_handshake(stream, self._ssl, server_side=True)
            except (ssl.SSLError, OSError, TimeoutError, anyio.BrokenResourceError) as exc:
                log.warning(
                    "tcp connection from %s closed: TLS handshake failed: %s",
                    peer,
                    _tls_reason(exc),
                )
                await close_quietly(stream)
                return
            except anyio.EndOfStream:
                log.info("tcp connection from %s closed during the TLS handshake", peer)
                await close_quietly(stream)
                return
        conn = _ServerConnection(self, FrameConnection(stream, peer, self._limits), self._clock())
        self._connections.add(conn)
        try:
            with conn.scope:
                await self._run_connection(conn, timeout)
        finally:
            conn.abort()
            self._connections.discard(conn)
            await conn.fc.aclose()
            if self._all_closed is not None and not self._connections:
                self._all_closed.set()

    async def _run_connection(self, conn: _ServerConnection, timeout: float) -> None:
        fc = conn.fc
        writer_done = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def write() -> None:
                try:
                    await fc.run_writer()
                except Exception as exc:
                    log.debug("tcp connection to %s broke while writing: %r", fc.peer, exc)
                finally:
                    writer_done.set()
                    tg.cancel_scope.cancel()

            tg.start_soon(write)
            fc.send(PREAMBLE)
            try:
                with anyio.fail_after(timeout):
                    await fc.read_preamble()
                async with request_tasks() as tasks:
                    conn.tasks = tasks
                    conn.spawn = tasks.spawn
                    try:
                        await fc.run_reader(conn, pause_when_congested=True)
                    finally:
                        # Stop the handlers before their tasks are waited for: nobody
                        # reads their answers any more.
                        conn.cancel_requests()
            except FrameError as exc:
                log.warning("tcp connection from %s closed: %s", fc.peer, exc)
                # Tell the peer why, if it speaks the protocol well enough to read it.
                try:
                    fc.send(encode_error(0, ProtocolError(f"the server closes: {exc}")))
                except ConnectionLost:
                    pass
                fc.close()
                with anyio.move_on_after(_GOODBYE_TIMEOUT):
                    await writer_done.wait()
            except TimeoutError:
                log.warning(
                    "tcp connection from %s closed: no protocol handshake within %ss",
                    fc.peer,
                    timeout,
                )
            except anyio.EndOfStream:
                log.debug("tcp connection from %s closed before its handshake", fc.peer)
            except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
                log.debug("tcp connection from %s broke: %r", fc.peer, exc)
            except Exception:
                # A bug, or the server's task group closing under us: it must cost this
                # connection only, never the server.
                log.exception("tcp connection from %s failed", fc.peer)
            tg.cancel_scope.cancel()

    async def _handle(self, request: Request, responder: _Responder, pending: Pending) -> None:
        assert self._dispatcher is not None
        try:
            await self._dispatcher.handle(request, responder, responder.scope, pending)
        except Exception:
            log.exception("tcp server: dispatching a request to %r failed", request.endpoint)
            if responder.open:
                try:
                    await responder.send_error(RequestPlaneError("internal server error"))
                except RequestPlaneError:
                    pass
        finally:
            responder.finish()
            responder.conn.tasks.done(responder.task)


class _ServerConnection:
    """The request table of one accepted connection."""

    __slots__ = (
        "active",
        "closing",
        "fc",
        "frame_since",
        "frame_start",
        "quiet_since",
        "scope",
        "seen",
        "sent_seen",
        "sent_since",
        "server",
        "spawn",
        "tasks",
    )

    def __init__(self, server: TcpServer, fc: FrameConnection, now: float) -> None:
        self.server = server
        self.fc = fc
        self.scope = anyio.CancelScope()
        self.active: dict[int, _Responder] = {}
        self.spawn: Spawn = _not_reading
        self.tasks = RequestTasks()  # replaced by the running one while reading
        # What check() saw last: bytes received, since when nothing happened, and where in
        # the byte stream the incomplete frame began (-1: none) and since when.
        self.seen = 0
        self.quiet_since = now
        self.frame_start = -1
        self.frame_since = now
        # Bytes sent when check() last saw the writer make progress, and since when.
        self.sent_seen = 0
        self.sent_since = now
        self.closing = False  # told the peer why it is closed; cancelled at the next check

    def check(self, now: float, idle_timeout: float | None, frame_timeout: float | None) -> None:
        """Close the connection if it idled, stalled inside a frame, or stopped reading what
        it is sent, for too long.

        Activity is the count of bytes received and sent, which the reader and writer keep
        anyway: nothing is added per frame or request."""
        fc = self.fc
        parser = fc.parser
        if parser is None:
            return  # still in its handshake, which the connect timeout bounds
        if self.closing:
            self.scope.cancel()  # the goodbye could not be sent in a whole period
            return
        received = fc.bytes_received
        if received != self.seen or self.active or fc.sending:
            # Bytes came, a handler runs, or an answer is still on its way: never idle.
            self.seen = received
            self.quiet_since = now
        elif idle_timeout is not None and now - self.quiet_since >= idle_timeout:
            log.debug(
                "tcp connection from %s closed: idle for %.0fs (REQUESTPLANE_TCP_IDLE_TIMEOUT)",
                fc.peer,
                now - self.quiet_since,
            )
            self.scope.cancel()
            return
        if frame_timeout is None:
            return
        sent = fc.bytes_sent
        if sent != self.sent_seen or not fc.sending:
            self.sent_seen = sent
            self.sent_since = now
        elif now - self.sent_since >= frame_timeout:
            # The peer reads nothing of what it is sent: its handlers wait on a full queue
            # for ever, and no goodbye could reach it. Drop it (its handlers are cancelled).
            log.warning(
                "tcp connection from %s closed: it has not read what it was sent for %.0fs "
                "(REQUESTPLANE_TCP_FRAME_TIMEOUT is %ss)",
                fc.peer,
                now - self.sent_since,
                frame_timeout,
            )
            self.scope.cancel()
            return
        partial = parser.partial()
        if not partial or fc.congested:
            # Between frames; or not reading because the peer does not read its answers.
            self.frame_start = -1
            return
        start = received - partial
        if start != self.frame_start:
            self.frame_start = start
            self.frame_since = now
        elif now - self.frame_since >= frame_timeout:
            why = (
                f"a frame begun {now - self.frame_since:.0f}s ago is still incomplete "
                f"(REQUESTPLANE_TCP_FRAME_TIMEOUT is {frame_timeout}s)"
            )
            log.warning("tcp connection from %s closed: %s", fc.peer, why)
            self.closing = True
            try:
                fc.send(encode_error(0, ProtocolError(f"the server closes: {why}")))
            except ConnectionLost:
                pass
            fc.close()  # the writer sends the goodbye, then ends the connection

    def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
        if kind == REQUEST:
            if rid == 0 or rid in self.active:
                raise FrameError(f"a REQUEST frame reuses request id {rid}")
            endpoint, headers, remaining, payload = decode_request(body)
            server = self.server
            if len(payload) > server._max_message:
                self.fc.send(encode_error(rid, _too_large(len(payload), server._max_message)))
                return
            deadline = None if remaining is None else server._clock() + remaining
            request = Request(endpoint, payload, headers, deadline)
            outcome = server._answer_now(request)
            if isinstance(outcome, bytes):
                # A synchronous handler answered on the spot: no task, no cancel scope.
                if len(outcome) > server._max_message:
                    self.fc.send(
                        encode_error(rid, _response_too_large(len(outcome), server._max_message))
                    )
                else:
                    self.fc.send2(HEADER.pack(len(outcome), RESPONSE, rid), outcome)
            elif isinstance(outcome, Pending):
                responder = _Responder(self, rid, server._new_scope())
                self.active[rid] = responder
                responder.task = self.spawn(server._handle, request, responder, outcome)
            else:
                self.fc.send(encode_error(rid, outcome))
        elif kind == CANCEL:
            cancelled = self.active.pop(rid, None)
            if cancelled is not None:
                cancelled.open = False
                cancelled.scope.cancel()
        else:
            raise FrameError(f"unexpected frame kind {kind}")

    def on_oversize(self, kind: int, rid: int, length: int) -> None:
        if kind == REQUEST and rid != 0 and rid not in self.active:
            # The header says exactly how long the body is, so the reader can discard it as
            # it arrives without buffering it, and the connection stays usable.
            log.info(
                "tcp request of %d bytes from %s refused: over the limit of %d bytes",
                length,
                self.fc.peer,
                self.server._max_message,
            )
            self.fc.send(encode_error(rid, _too_large(length, self.server._max_message)))
            return
        name = KIND_NAMES.get(kind)
        if name is None:
            raise FrameError(f"unknown frame kind {kind}")
        if kind not in (REQUEST, CANCEL):
            raise FrameError(f"a client sent a {name} frame (clients send REQUEST and CANCEL)")
        if kind == REQUEST:
            raise FrameError(f"a REQUEST frame reuses request id {rid}")
        raise FrameError(f"a {name} frame has a body of {length} bytes")

    def abort(self) -> None:
        """The connection is gone: cancel every handler still running for it."""
        self.fc.abandon()
        self.cancel_requests()

    def cancel_requests(self) -> None:
        """Cancel every handler still running; none of them may send anything more."""
        active, self.active = self.active, {}
        for responder in active.values():
            responder.open = False
            responder.scope.cancel()


class _Responder:
    """Answers one request with frames on its connection (see ``Responder`` in the core)."""

    __slots__ = ("conn", "fc", "limit", "open", "rid", "scope", "task", "unyielded")

    def __init__(self, conn: _ServerConnection, rid: int, scope: anyio.CancelScope) -> None:
        self.conn = conn
        self.fc = conn.fc
        self.limit = conn.server._max_message
        self.rid = rid
        self.scope = scope
        self.open = True
        self.unyielded = 0
        self.task: object = None  # the handle of its task, for RequestTasks.done()

    def finish(self) -> None:
        if self.open:
            self.open = False
            active = self.conn.active
            if active.get(self.rid) is self:
                del active[self.rid]

    def _check_open(self) -> FrameConnection:
        if not self.open:
            raise ConnectionLost("the caller cancelled the request or went away")
        return self.fc

    async def send_response(self, payload: bytes) -> None:
        size = len(payload)
        if size > self.limit:
            raise _response_too_large(size, self.limit)
        fc = self._check_open()
        self.finish()
        fc.send2(HEADER.pack(size, RESPONSE, self.rid), payload)
        if fc.congested:
            await fc.wait_drained()

    async def send_chunk(self, payload: bytes) -> None:
        size = len(payload)
        if size > self.limit:
            raise PayloadTooLarge(
                f"a stream chunk of {size} bytes is over the limit of {self.limit} bytes"
            )
        if not self.open:
            raise ConnectionLost("the caller cancelled the request or went away")
        fc = self.fc
        fc.send2(HEADER.pack(size, CHUNK, self.rid), payload)
        if fc.congested:
            self.unyielded = 0
            await fc.wait_drained()
        else:
            # A generator that never awaits would otherwise starve the connection's reader,
            # and with it the CANCEL frame that should stop it. Yielding on every chunk
            # would halve stream throughput, so only every few chunks.
            self.unyielded += 1
            if self.unyielded >= _CHUNKS_PER_YIELD:
                self.unyielded = 0
                await anyio.lowlevel.checkpoint()

    async def send_end(self) -> None:
        fc = self._check_open()
        self.finish()
        fc.send(HEADER.pack(0, END, self.rid))

    async def send_error(self, error: RequestPlaneError) -> None:
        fc = self._check_open()
        self.finish()
        fc.send(encode_error(self.rid, error))


def _not_started(request: Request) -> Pending:
    raise RuntimeError("a request arrived before the server started")


def _not_reading(*args: Any) -> object:
    raise RuntimeError("a request arrived on a connection that is not reading")


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request of {size} bytes is over the server's limit of {limit}")


def _response_too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the response of {size} bytes is over the limit of {limit} bytes")


async def _advertise_host(settings: TcpSettings) -> str:
    if settings.advertise_host is not None:
        return settings.advertise_host
    family = _WILDCARDS.get(settings.host)
    if family is None:
        return settings.host
    # A wildcard is not an address anyone can connect to: publish where this machine's
    # name points, which other hosts can usually reach too.
    try:
        infos = await anyio.getaddrinfo(
            socket.gethostname(), None, family=family, type=socket.SOCK_STREAM
        )
        return str(infos[0][4][0])
    except (OSError, IndexError):
        return "127.0.0.1" if family == socket.AF_INET else "::1"


def _listen_failure(host: str, port: int, exc: OSError) -> str:
    """Why the server cannot listen, naming the variable to change (the port when it is
    taken or privileged, the host otherwise)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        return (
            f"the tcp server cannot listen on {host}:{port}: {reason}; REQUESTPLANE_TCP_PORT "
            f"sets the port (now {port}): choose a free one, or 0 to let the OS choose"
        )
    return (
        f"the tcp server cannot listen on {host}:{port}: {reason}; REQUESTPLANE_TCP_HOST sets "
        f"the interface (now {host!r}): an address of this machine, or 0.0.0.0 / :: for all"
    )


def _peer_name(stream: ByteStream) -> str:
    try:
        address = stream.extra(SocketAttribute.remote_address)
    except (anyio.TypedAttributeLookupError, OSError):
        return "an unknown peer"
    if isinstance(address, str):
        return address
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    if isinstance(cause, TimeoutError):
        return "no handshake within the connect timeout"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the client's certificate is not trusted ({cause.verify_message or cause.reason})"
    if isinstance(cause, ssl.SSLError):
        reason = str(cause.reason or cause)
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "the client sent no certificate (mutual TLS requires one)"
        if "ALERT" in reason:
            return f"the client refused the handshake (TLS alert {reason})"
        if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL"):
            return f"the client does not speak TLS ({reason})"
        return reason
    return repr(cause) if cause is not None else "the connection broke"
