"""A minimal multiplexed transport over Unix sockets (the uds example's frames and addresses,
with a call id), for the conformance kit to test itself on a shared connection: every call
of a client goes over one connection per server.

``muxshielded`` writes each request frame shielded from cancellation, ``muxtorn`` does not:
a caller cancelled in the middle of its write leaves half a frame on the connection. Unary
calls only (it declares no streaming, cancellation or deadlines).
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from requestplane_uds.addressing import address_for, parse_target
from requestplane_uds.frames import CONNECTION_ERRORS, encode_frame, read_frame
from requestplane_uds.settings import UdsSettings

from requestplane_core import (
    Address,
    Capabilities,
    ClientStats,
    ConnectionLost,
    PayloadTooLarge,
    Request,
    RequestPlaneError,
    ResponseStream,
    TransportClient,
    TransportServer,
    TransportSpec,
    error_from_wire,
    hookimpl,
)
from requestplane_core.plugin_api import Dispatch


class _Answers:
    """One call's responder: frames tagged with its id, on the shared connection."""

    def __init__(self, stream: SocketStream, lock: anyio.Lock, call_id: int) -> None:
        self._stream, self._lock, self._id = stream, lock, call_id

    async def _send(self, frame: bytes) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                try:
                    await self._stream.send(frame)
                except CONNECTION_ERRORS as exc:
                    raise ConnectionLost("the caller is gone") from exc

    async def send_response(self, payload: bytes) -> None:
        await self._send(encode_frame("response", payload, id=self._id))

    async def send_chunk(self, payload: bytes) -> None:
        raise NotImplementedError

    async def send_end(self) -> None:
        raise NotImplementedError

    async def send_error(self, error: RequestPlaneError) -> None:
        await self._send(_tagged_error(error, self._id))


def _tagged_error(error: RequestPlaneError, call_id: int) -> bytes:
    message = getattr(error, "remote_message", error.message)
    remote_type = getattr(error, "type_name", "")
    return encode_frame(
        "error", code=error.code, message=message, remote_type=remote_type, id=call_id
    )


class MuxServer(TransportServer):
    def __init__(self, settings: UdsSettings) -> None:
        self._settings = settings
        self._dir = Path(tempfile.mkdtemp(prefix="rp-mux-"))
        self._path = self._dir / "s.sock"
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._dispatch: Dispatch | None = None

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        self._dispatch = dispatcher
        listener = await anyio.create_unix_listener(self._path)
        await task_group.start(self._serve, listener)

    async def _serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with self._scope:
                async with listener, anyio.create_task_group() as connections:
                    task_status.started()
                    while True:
                        connections.start_soon(self._connection, await listener.accept())
        finally:
            self._path.unlink(missing_ok=True)
            self._dir.rmdir()
            self._stopped.set()

    async def _connection(self, stream: SocketStream) -> None:
        assert self._dispatch is not None
        lock = anyio.Lock()
        reader = BufferedByteReceiveStream(stream)
        async with stream, anyio.create_task_group() as calls:
            try:
                while True:
                    frame = await read_frame(reader, self._settings.max_message_size)
                    header = frame.header
                    request = Request(str(header["endpoint"]), frame.payload, {}, None)
                    answers = _Answers(stream, lock, int(header["id"]))
                    calls.start_soon(self._dispatch.handle, request, answers)
            except (*CONNECTION_ERRORS, RequestPlaneError, KeyError, ValueError):
                pass  # a torn or malformed frame: nothing more can be read on this connection
            calls.cancel_scope.cancel()

    def address(self, endpoint: str) -> Address:
        return address_for(self._path, endpoint)

    async def aclose(self) -> None:
        self._scope.cancel()
        await self._stopped.wait()


class _Connection:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.lock = anyio.Lock()
        self.waiting: dict[int, tuple[anyio.Event, list[bytes | RequestPlaneError]]] = {}

    async def read(self, max_payload: int) -> None:
        reader = BufferedByteReceiveStream(self.stream)
        try:
            while True:
                frame = await read_frame(reader, max_payload)
                event, outcome = self.waiting.pop(int(frame.header["id"]), (anyio.Event(), []))
                if frame.kind == "error":
                    h = frame.header
                    code, message = str(h["code"]), str(h["message"])
                    outcome.append(error_from_wire(code, message, str(h.get("remote_type", ""))))
                else:
                    outcome.append(frame.payload)
                event.set()
        except (*CONNECTION_ERRORS, RequestPlaneError):
            pass
        finally:
            waiting, self.waiting = self.waiting, {}
            for event, outcome in waiting.values():
                outcome.append(ConnectionLost("the shared connection broke"))
                event.set()


class MuxClient(TransportClient):
    shielded = True

    def __init__(self, settings: UdsSettings) -> None:
        self.stats = ClientStats()
        self._settings = settings
        self._ids = itertools.count()
        self._connections: dict[str, _Connection] = {}
        self._tg: TaskGroup | None = None

    def start(self, task_group: TaskGroup) -> None:
        self._tg = task_group

    async def _connection(self, path: str) -> _Connection:
        if path not in self._connections:
            connection = _Connection(await anyio.connect_unix(path))
            self._connections[path] = connection
            self.stats.open_connections += 1
            assert self._tg is not None
            self._tg.start_soon(connection.read, self._settings.max_message_size)
        return self._connections[path]

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        if len(payload) > self._settings.max_message_size:
            raise PayloadTooLarge("too large")
        target = parse_target(address)
        self.stats.requests += 1
        connection = await self._connection(target.socket_path)
        call_id = next(self._ids)
        event, outcome = connection.waiting[call_id] = (anyio.Event(), [])
        frame = encode_frame("request", payload, endpoint=target.endpoint, id=call_id)
        try:
            # The mistake under test: without the shield, a cancelled caller stops writing
            # in the middle of its frame.
            with anyio.CancelScope(shield=True) if self.shielded else nullcontext():
                async with connection.lock:
                    await connection.stream.send(frame)
            await event.wait()
        finally:
            connection.waiting.pop(call_id, None)
        result = outcome[0]
        if isinstance(result, RequestPlaneError):
            self.stats.errors += 1
            raise result
        return result

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        raise NotImplementedError("unary calls only")

    async def aclose(self) -> None:
        connections, self._connections = self._connections, {}
        for connection in connections.values():
            self.stats.open_connections -= 1
            await anyio.aclose_forcefully(connection.stream)


class TornWritesClient(MuxClient):
    shielded = False


def _plugin(name: str, client: type[MuxClient]) -> type:
    class Plugin:
        @staticmethod
        @hookimpl
        def requestplane_transports() -> list[TransportSpec[UdsSettings]]:
            return [
                TransportSpec(
                    name=name,
                    description="multiplexed Unix sockets (a test of the kit)",
                    settings=UdsSettings,
                    server=MuxServer,
                    client=client,
                    capabilities=Capabilities(streaming=False, cancellation=False, deadlines=False),
                    schemes=("uds",),
                )
            ]

    return Plugin


MUXSHIELDED = _plugin("muxshielded", MuxClient)
MUXTORN = _plugin("muxtorn", TornWritesClient)
