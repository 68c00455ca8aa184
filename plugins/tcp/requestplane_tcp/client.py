"""The TCP client: one multiplexed connection per target, no task per request.

A call queues its REQUEST frame and waits on its own event; the connection's reader task
resolves it when the answer arrives. Leaving early (cancellation, deadline, ``aclose`` of a
stream) queues a CANCEL frame and forgets the id, so late frames for it are dropped.
"""

from __future__ import annotations

import copy
import logging
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from requestplane_core import (
    Address,
    ClientStats,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    PayloadTooLarge,
    ProtocolError,
    RequestPlaneError,
    ResponseStream,
    TransportClient,
    Unavailable,
    error_from_wire,
)
from requestplane_core.lowlevel import LoopTimers, TimerHandle, Waiter, loop_timers, waiter_factory

from .connection import FrameConnection, body_bytes, close_quietly
from .framing import (
    CANCEL,
    CHUNK,
    END,
    ERROR,
    HEADER,
    KIND_NAMES,
    METADATA_LIMIT,
    PREAMBLE,
    REQUEST,
    RESPONSE,
    FrameError,
    TruncatedFrame,
    decode_error,
    encode_request_head,
    frame_limits,
)
from .settings import TcpSettings
from .tls import check_tls_settings, client_context, tls_failure
from .tls_stream import tls_handshake

__all__ = ["TcpClient"]

log = logging.getLogger("requestplane.tcp")

_ErrorFactory = Callable[[], RequestPlaneError]
_TARGET_CACHE_SIZE = 1024


class _Target:
    """A parsed address: which connection, and the endpoint as it goes on the wire."""

    __slots__ = ("endpoint", "key", "peer")

    def __init__(self, address: Address) -> None:
        self.key = (address.host, address.port)
        self.endpoint = address.path.encode()
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.peer = f"{host}:{address.port}"


class _Unary:
    """A request() in flight: its waiter and its outcome."""

    __slots__ = ("chunks", "done", "error", "expiry", "size", "value", "waiter")

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter
        self.done = False
        self.value: bytes = b""
        self.error: _ErrorFactory | None = None
        self.chunks: list[bytes] | None = None
        self.size = 0
        # (connection, request id, peer, timeout) of a call with a deadline, for expire().
        self.expiry: tuple[_ClientConnection, int, str, float | None] | None = None

    def expire(self) -> None:
        """The call's deadline passed: tell the server to stop, and fail the call."""
        if self.done or self.expiry is None:
            return
        conn, rid, peer, timeout = self.expiry
        conn.cancel(rid)
        self.fail(lambda: DeadlineExceeded(f"no answer from {peer} within the {timeout}s timeout"))

    def on_response(self, payload: bytes) -> None:
        self.value = payload
        self.done = True
        self.waiter.set()

    def on_chunk(self, payload: bytes, limit: int) -> bool:
        """Collect a chunk of a streamed response; False if the joined response is too big."""
        if self.chunks is None:
            self.chunks = []
        self.size += len(payload)
        if self.size > limit:
            self.fail(lambda: _response_too_large(self.size, limit, "joined streamed response"))
            return False
        self.chunks.append(payload)
        return True

    def on_end(self) -> None:
        self.value = b"".join(self.chunks) if self.chunks else b""
        self.done = True
        self.waiter.set()

    def fail(self, error: _ErrorFactory) -> None:
        self.error = error
        self.done = True
        self.waiter.set()


class _StreamState:
    """A stream() in flight: chunks the reader delivered and the consumer has not taken."""

    __slots__ = ("chunks", "done", "error", "expiry", "new_waiter", "timer", "waiter", "waiting")

    def __init__(self, new_waiter: Callable[[], Waiter]) -> None:
        self.chunks: deque[bytes] = deque()
        self.done = False
        self.error: _ErrorFactory | None = None
        self.new_waiter = new_waiter
        self.waiter: Waiter | None = None
        self.waiting = False
        # The deadline's timer, and (connection, request id, peer, timeout) for expire().
        # Kept here, not on the stream object: a stream dropped without aclose() must stay
        # collectable, so that its __del__ stops the handler.
        self.timer: TimerHandle | None = None
        self.expiry: tuple[_ClientConnection, int, str, float | None] | None = None

    def _wake(self) -> None:
        if self.waiting and self.waiter is not None:
            self.waiting = False
            self.waiter.set()

    def settle(self) -> None:
        """Done: the deadline no longer matters."""
        self.done = True
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def on_response(self, payload: bytes) -> None:
        self.chunks.append(payload)
        self.settle()
        self._wake()

    def on_chunk(self, payload: bytes, limit: int) -> bool:
        self.chunks.append(payload)
        if self.waiting:
            self._wake()
        return True

    def on_end(self) -> None:
        self.settle()
        self._wake()

    def fail(self, error: _ErrorFactory) -> None:
        if not self.done:
            self.error = error
            self.settle()
        self._wake()

    def expire(self) -> None:
        """The stream's deadline passed: tell the server to stop, and fail the stream (after
        the chunks already here)."""
        self.timer = None
        if self.done or self.expiry is None:
            return
        conn, rid, peer, timeout = self.expiry
        conn.cancel(rid)
        self.fail(
            lambda: DeadlineExceeded(
                f"the stream from {peer} did not end within its {timeout}s timeout"
            )
        )


_Call = _Unary | _StreamState


class _Pending:
    """A connection being opened; concurrent callers to the same target share it."""

    __slots__ = ("conn", "error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.conn: _ClientConnection | None = None
        self.error: _ErrorFactory | None = None


class _ClientConnection:
    """The calls in flight on one connection, resolved by its reader."""

    __slots__ = (
        "calls",
        "client",
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

    def __init__(self, client: TcpClient, key: tuple[str, int | None], fc: FrameConnection):
        self.client = client
        self.key = key
        self.fc = fc
        self.new_waiter = waiter_factory()
        self.max_message = client._max_message
        self.calls: dict[int, _Call] = {}
        self.next_id = 0
        self.usable = True
        self.scope = anyio.CancelScope()
        self.goodbye: RequestPlaneError | None = None
        self.reason: _ErrorFactory | None = None

    def add(self, call: _Call) -> int:
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
                call.fail(_too_large_factory(length, self.max_message))
                if kind == CHUNK:
                    self.cancel(rid)
            return
        name = KIND_NAMES.get(kind)
        if name is None:
            raise FrameError(f"the server sent an unknown frame kind {kind}")
        if kind in (REQUEST, CANCEL):
            raise FrameError(f"the server sent a {name} frame (servers never do)")
        raise FrameError(f"the server sent a {name} frame of {length} bytes, over its limit")

    def fail_all(self, error: _ErrorFactory) -> None:
        self.usable = False
        self.fc.abandon()
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.fail(error)


class TcpClient(TransportClient):
    def __init__(self, settings: TcpSettings) -> None:
        check_tls_settings(settings)
        self.stats = ClientStats()
        self._settings = settings
        self._ssl = client_context(settings) if settings.tls else None
        self._max_message = settings.max_message_size
        self._limits = frame_limits(
            {
                RESPONSE: settings.max_message_size,
                CHUNK: settings.max_message_size,
                END: 0,
                ERROR: METADATA_LIMIT,
            }
        )
        self._request_timeout = settings.request_timeout
        self._tg: TaskGroup | None = None
        self._targets: dict[Address | str, _Target] = {}
        self._conns: dict[tuple[str, int | None], _ClientConnection] = {}
        self._pending: dict[tuple[str, int | None], _Pending] = {}
        self._runners: set[anyio.CancelScope] = set()
        self._runners_done: anyio.Event | None = None
        self._closed = False
        self._timers: LoopTimers | None = None

    def start(self, task_group: TaskGroup) -> None:
        self._tg = task_group

    def _start_timers(self) -> LoopTimers:
        if self._tg is None:
            raise RequestPlaneError(
                "the tcp client is not started: use `async with client:` or client.start(tg)"
            )
        self._timers = loop_timers(self._tg)
        return self._timers

    # -- calls -----------------------------------------------------------------------------

    def _target(self, address: Address | str) -> _Target:
        target = self._targets.get(address)
        if target is not None:
            return target
        parsed = Address.parse(address)
        if parsed.scheme != "tcp":
            raise ConfigError(f"{str(address)!r} is not a tcp:// address")
        if not parsed.host or parsed.port is None or not parsed.path:
            raise ConfigError(
                f"{str(address)!r} is not a tcp address: expected tcp://host:port/endpoint"
            )
        if len(self._targets) >= _TARGET_CACHE_SIZE:
            self._targets.clear()
        target = self._targets[address] = _Target(parsed)
        return target

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        stats = self.stats
        stats.requests += 1
        try:
            target = self._targets.get(address) or self._target(address)
            size = len(payload)
            if size > self._max_message:
                raise PayloadTooLarge(
                    f"the request of {size} bytes is over the limit of "
                    f"{self._max_message} bytes; not sent"
                )
            if timeout is None:
                timeout = self._request_timeout
            if timeout is None:
                deadline = None
            else:
                timers = self._timers or self._start_timers()
                deadline = timers.clock() + timeout
            conn = self._conns.get(target.key)
            if conn is None:
                conn = await self._connect(target, deadline)
            call = _Unary(conn.new_waiter())
            rid = conn.add(call)
            try:
                if deadline is None:
                    conn.fc.send2(
                        encode_request_head(rid, target.endpoint, headers, None, size), payload
                    )
                    stats.bytes_sent += size
                    if conn.fc.congested:
                        await conn.fc.wait_drained()
                    await call.waiter.wait()
                else:
                    remaining = deadline - timers.clock()
                    if remaining <= 0:
                        raise DeadlineExceeded(
                            f"the deadline for {target.peer} passed before the request was sent"
                        )
                    conn.fc.send2(
                        encode_request_head(rid, target.endpoint, headers, remaining, size),
                        payload,
                    )
                    stats.bytes_sent += size
                    if conn.fc.congested:
                        with anyio.CancelScope(deadline=deadline) as scope:
                            await conn.fc.wait_drained()
                        if scope.cancelled_caught:
                            raise DeadlineExceeded(
                                f"no answer from {target.peer} within the {timeout}s timeout"
                            )
                    # A timer that fails the call, rather than a cancel scope around the
                    # wait: the scope cost more than the rest of the call (README).
                    call.expiry = (conn, rid, target.peer, timeout)
                    timer = timers.call_at(deadline, call.expire)
                    try:
                        await call.waiter.wait()
                    finally:
                        timer.cancel()
            finally:
                if not call.done:
                    conn.cancel(rid)  # cancelled, or never sent
        except RequestPlaneError:
            stats.errors += 1
            raise
        if call.error is not None:
            stats.errors += 1
            raise call.error()
        stats.bytes_received += len(call.value)
        return call.value

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        return _TcpResponseStream(self, address, payload, headers, timeout)

    # -- connections -----------------------------------------------------------------------

    async def _connect(self, target: _Target, deadline: float | None) -> _ClientConnection:
        if self._closed:
            raise ConnectionLost("the tcp client is closed")
        if self._tg is None:
            raise RequestPlaneError(
                "the tcp client is not started: use `async with client:` or client.start(tg)"
            )
        pending = self._pending.get(target.key)
        if pending is None:
            pending = self._pending[target.key] = _Pending()
            # The connection is opened (and then read) by a task of the client, so that a
            # caller who gives up does not abort it for the others waiting on it.
            self._tg.start_soon(self._open, target, pending)
        if deadline is None:
            await pending.event.wait()
        else:
            with anyio.CancelScope(deadline=deadline):
                await pending.event.wait()
            if not pending.event.is_set():
                raise DeadlineExceeded(f"no connection to {target.peer} before the deadline")
        if pending.error is not None:
            raise pending.error()
        assert pending.conn is not None
        return pending.conn

    async def _open(self, target: _Target, pending: _Pending) -> None:
        if self._timers is None:
            # With the first connection rather than the first deadline: the client's set of
            # background tasks (trio's timer task) is complete once it has connected.
            self._start_timers()
        scope = anyio.CancelScope()
        self._runners.add(scope)
        try:
            with scope:
                try:
                    conn = await self._handshake(target, pending)
                finally:
                    # Settled either way: from now on callers find the connection in _conns,
                    # or, once it breaks, open a new one.
                    if self._pending.get(target.key) is pending:
                        del self._pending[target.key]
                    if not pending.event.is_set():
                        pending.error = _closed_error
                        pending.event.set()
                if conn is not None:
                    await self._run(conn)
        finally:
            self._runners.discard(scope)
            if self._runners_done is not None and not self._runners:
                self._runners_done.set()

    async def _handshake(self, target: _Target, pending: _Pending) -> _ClientConnection | None:
        host, port = target.key
        assert port is not None
        settings = self._settings
        fc: FrameConnection | None = None
        error: RequestPlaneError
        try:
            with anyio.fail_after(settings.connect_timeout):
                stream: Any = await anyio.connect_tcp(host, port)
                try:
                    if self._ssl is not None:
                        stream = await tls_handshake(
                            stream,
                            self._ssl,
                            server_side=False,
                            hostname=settings.tls_server_name or host,
                        )
                    fc = FrameConnection(stream, target.peer, self._limits)
                    await stream.send(PREAMBLE)
                    await fc.read_preamble()
                except BaseException:
                    await close_quietly(stream)
                    raise
        # No request was sent on a connection that failed to open, so those failures are
        # Unavailable (retriable: another instance may serve it), unless the peer is
        # misconfigured or speaks something else (ProtocolError: retrying cannot help).
        except TimeoutError:
            error = Unavailable(
                f"could not connect to {target.peer} within {settings.connect_timeout}s"
            )
        except FrameError as exc:
            error = ProtocolError(f"{target.peer} is not a compatible server: {exc}")
        except ssl.SSLError as exc:
            error = tls_failure(target.peer, exc)
        except anyio.BrokenResourceError as exc:
            cause = exc.__cause__
            error = (
                tls_failure(target.peer, cause)
                if isinstance(cause, ssl.SSLError)
                else Unavailable(f"could not connect to {target.peer}: {cause or exc!r}")
            )
        except anyio.EndOfStream:
            error = ProtocolError(
                f"{target.peer} closed the connection during the handshake (is it a "
                "requestplane-tcp server, with the same TLS setting?)"
            )
        except OSError as exc:
            error = Unavailable(f"could not connect to {target.peer}: {exc.strerror or exc}")
        else:
            assert fc is not None
            conn = _ClientConnection(self, target.key, fc)
            if self._closed:
                await fc.aclose()
                pending.error = _closed_error
                pending.event.set()
                return None
            self._conns[target.key] = conn
            self.stats.open_connections += 1
            pending.conn = conn
            pending.event.set()
            return conn
        pending.error = _copier(error)
        pending.event.set()
        return None

    async def _run(self, conn: _ClientConnection) -> None:
        fc = conn.fc
        try:
            with conn.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, conn, tg.cancel_scope)
                    try:
                        await fc.run_reader(conn)
                        conn.reason = conn.reason or _lost(fc.peer, None)
                    except TruncatedFrame as exc:
                        # The server vanished (killed, say, with its send buffer full):
                        # the connection is lost, like one lost between frames.
                        log.info("tcp connection to %s lost: %s", fc.peer, exc)
                        conn.reason = conn.reason or _copier(ConnectionLost(f"{fc.peer}: {exc}"))
                    except FrameError as exc:
                        log.warning("tcp connection to %s closed: %s", fc.peer, exc)
                        conn.reason = _copier(ProtocolError(f"{fc.peer} broke the protocol: {exc}"))
                    except ssl.SSLError as exc:
                        conn.reason = _copier(tls_failure(fc.peer, exc))
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                        cause = exc.__cause__
                        conn.reason = conn.reason or (
                            _copier(tls_failure(fc.peer, cause))
                            if isinstance(cause, ssl.SSLError)
                            else _lost(fc.peer, exc)
                        )
                    except Exception as exc:
                        # A bug here must cost this connection only, never the task group
                        # the client was started in.
                        log.exception("tcp connection to %s failed", fc.peer)
                        conn.reason = _lost(fc.peer, exc)
                    # Fail the calls now, not after the writer has wound down: they are lost.
                    self._detach(conn)
                    tg.cancel_scope.cancel()
        finally:
            self._detach(conn)
            await fc.aclose()

    @staticmethod
    async def _write(conn: _ClientConnection, scope: anyio.CancelScope) -> None:
        try:
            await conn.fc.run_writer()
        except Exception as exc:
            conn.reason = conn.reason or _lost(conn.fc.peer, exc)
        finally:
            scope.cancel()

    def _detach(self, conn: _ClientConnection) -> None:
        """Take a broken connection out of service and fail what was in flight on it."""
        if self._conns.get(conn.key) is conn:
            del self._conns[conn.key]
            self.stats.open_connections -= 1
        if conn.usable:
            reason = conn.reason or _closed_error
            if conn.goodbye is not None:
                # The server said why it closed: that beats "connection closed".
                reason = _copier(conn.goodbye)
            conn.fail_all(reason)

    async def aclose(self) -> None:
        self._closed = True
        if self._timers is not None:
            self._timers.close()
        for conn in list(self._conns.values()):
            conn.fail_all(_closed_error)
        for pending in list(self._pending.values()):
            if not pending.event.is_set():
                pending.error = _closed_error
                pending.event.set()
        if self._runners:
            self._runners_done = anyio.Event()
            for scope in list(self._runners):
                scope.cancel()
            with anyio.move_on_after(5):
                await self._runners_done.wait()


class _TcpResponseStream(ResponseStream):
    def __init__(
        self,
        client: TcpClient,
        address: Address | str,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._address = address
        self._payload = payload
        self._headers = headers
        self._timeout = timeout
        self._state: _StreamState | None = None
        self._conn: _ClientConnection | None = None
        self._rid = 0
        self._closed = False
        self._failed: _ErrorFactory | None = None
        self._counted = False  # its error is in the client's stats (once, however re-raised)

    async def _start(self) -> _StreamState:
        client = self._client
        client.stats.streams += 1
        target = client._target(self._address)
        payload = self._payload
        if len(payload) > client._max_message:
            raise PayloadTooLarge(
                f"the request of {len(payload)} bytes is over the limit of "
                f"{client._max_message} bytes; not sent"
            )
        timeout = self._timeout if self._timeout is not None else client._request_timeout
        timers: LoopTimers | None = None
        deadline = None
        if timeout is not None:
            timers = client._timers or client._start_timers()
            deadline = timers.clock() + timeout
        conn = client._conns.get(target.key)
        if conn is None:
            conn = await client._connect(target, deadline)
        state = _StreamState(conn.new_waiter)
        remaining = None
        if timers is not None and deadline is not None:
            remaining = deadline - timers.clock()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"the deadline for {target.peer} passed before the request was sent"
                )
        rid = conn.add(state)
        try:
            conn.fc.send2(
                encode_request_head(rid, target.endpoint, self._headers, remaining, len(payload)),
                payload,
            )
        except BaseException:
            conn.calls.pop(rid, None)
            raise
        if timers is not None and deadline is not None:
            # One timer for the whole stream instead of a cancel scope around every wait.
            state.expiry = (conn, rid, target.peer, timeout)
            state.timer = timers.call_at(deadline, state.expire)
        client.stats.bytes_sent += len(payload)
        self._payload = b""
        self._conn, self._rid, self._state = conn, rid, state
        if conn.fc.congested:
            # Throttle a caller that queues faster than the connection drains.
            await conn.fc.wait_drained()
        return state

    async def __anext__(self) -> bytes:
        state = self._state
        if state is not None and state.chunks:  # the common case under load: already here
            chunk = state.chunks.popleft()
            self._client.stats.bytes_received += len(chunk)
            return chunk
        try:
            if state is None:
                if self._failed is not None:
                    raise self._failed()
                if self._closed:
                    raise StopAsyncIteration
                try:
                    state = await self._start()
                except RequestPlaneError as exc:
                    self._failed = _copier(exc)
                    raise
            while True:
                if state.chunks:
                    chunk = state.chunks.popleft()
                    self._client.stats.bytes_received += len(chunk)
                    return chunk
                if state.error is not None:
                    self._closed = True
                    raise state.error()
                if state.done or self._closed:
                    raise StopAsyncIteration
                waiter = state.waiter = state.new_waiter()
                state.waiting = True
                try:
                    await waiter.wait()  # the deadline's timer fails the stream and wakes us
                except BaseException:
                    if state.waiting:
                        # The caller was cancelled while waiting: stop the handler too.
                        self._abandon(
                            lambda: ConnectionLost("the stream was cancelled by its caller")
                        )
                    raise
        except RequestPlaneError:
            if not self._counted:
                self._counted = True
                self._client.stats.errors += 1
            raise

    def _abandon(self, error: _ErrorFactory | None) -> None:
        state = self._state
        if state is None or state.done:
            return
        state.waiting = False
        if error is not None:
            state.error = error
        state.settle()
        assert self._conn is not None
        self._conn.cancel(self._rid)

    def __del__(self) -> None:
        # Dropped without aclose(), e.g. by `break` out of `async for` without `async with`:
        # still stop the handler on the server (queueing CANCEL is synchronous).
        if self._state is not None and not self._state.done:
            try:
                self._abandon(None)
            except Exception:  # the loop may be gone already (interpreter shutdown)
                pass

    async def aclose(self) -> None:
        self._abandon(None)
        self._closed = True
        if self._state is not None:
            self._state.chunks.clear()


def _copier(error: RequestPlaneError) -> _ErrorFactory:
    """A fresh copy per caller: one exception object raised in many tasks would share (and
    keep growing) one traceback."""

    def make() -> RequestPlaneError:
        return copy.copy(error)

    return make


def _closed_error() -> RequestPlaneError:
    return ConnectionLost("the tcp client was closed")


def _lost(peer: str, exc: BaseException | None) -> _ErrorFactory:
    why = "closed the connection" if exc is None else f"connection broke ({exc!r})"
    return lambda: ConnectionLost(f"{peer}: {why}")


def _too_large_factory(size: int, limit: int) -> _ErrorFactory:
    return lambda: _response_too_large(size, limit, "response")


def _response_too_large(size: int, limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"the {what} of {size} bytes is over this client's limit of {limit}")
