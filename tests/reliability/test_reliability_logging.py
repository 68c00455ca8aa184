"""Scenario 6: no log line carries a payload, a header value or a credential.

Every log record of the process is captured with the root logger at DEBUG, as an operator
turning on debug logging would (records taken as they are created, whatever handlers and
propagation say; a logger that a library or plugin set to a higher level keeps it), while
traffic with distinctive payloads and header values goes through every path that logs:
success, handler errors, deadlines, cancellation, unknown endpoints, oversize payloads (both
ends), and bad input from raw clients (malformed frames and requests). For NATS, distinctive
credentials (token, user/password, credentials inside the URL) go through successful
connects, refused connects, a broker outage and a settings conflict. No record (message,
exception text or stack) and no error message may contain any of them. (A payload that only
appears hex-encoded or split would escape this check; no transport logs payload bytes.)

Known failures: bug B5 (a settings conflict prints the NATS credentials) and bug B6 (hpack,
under the HTTP transport, logs header values at DEBUG) of /work/brief/bugs.md.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest
from reliability_helpers import BOUND, plane

from requestplane_core import (
    Address,
    ConfigError,
    DeadlineExceeded,
    EndpointNotFound,
    PayloadTooLarge,
    RemoteError,
    Request,
    RequestPlaneError,
    Server,
    Unavailable,
)

pytestmark = pytest.mark.anyio

SECRET_PAYLOAD = b"SECRET-PAYLOAD-7731"
SECRET_HEADER = "SECRET-HEADER-5512"
SECRET_TOKEN = "SECRET-TOKEN-4471"
SECRET_PASSWORD = "SECRET-PASSWORD-9902"
WRONG_SECRET = "SECRET-WRONG-CREDENTIAL-3390"
SECRETS = (SECRET_PAYLOAD.decode(), SECRET_HEADER, SECRET_TOKEN, SECRET_PASSWORD, WRONG_SECRET)
LIMIT = 64 * 1024
_FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


class LogCapture:
    """Every record any logger of this process creates, from any thread."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []  # error messages, addresses, health details seen meanwhile

    @contextmanager
    def active(self) -> Iterator[LogCapture]:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.records.append(record)
            return record

        logging.setLogRecordFactory(factory)
        disabled = logging.root.manager.disable
        logging.disable(logging.NOTSET)
        root_level = logging.root.level
        logging.root.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            logging.setLogRecordFactory(previous)
            logging.disable(disabled)
            logging.root.setLevel(root_level)

    def note(self, *texts: object) -> None:
        self.texts.extend(str(t) for t in texts)

    async def expect(self, error: type[Exception], call: Awaitable[object]) -> None:
        """Await ``call``, which must fail with ``error``; keep its message for the check."""
        with pytest.raises(error) as info:
            await call
        self.note(info.value)

    def leaks(self, secrets: tuple[str, ...] = SECRETS) -> list[str]:
        lines = [_FORMAT.format(r) for r in self.records] + ["NOTE " + t for t in self.texts]
        return [line for line in lines if any(s in line for s in secrets)]


def test_the_check_finds_a_planted_secret() -> None:
    capture = LogCapture()
    with capture.active():
        logging.getLogger("requestplane.planted").debug("payload=%r", SECRET_PAYLOAD)
    assert len(capture.leaks()) == 1


# -- payloads and header values ------------------------------------------------------------


class Handlers:
    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def echo(self, request: Request) -> bytes:
        return request.payload

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield request.payload

    async def fail(self, request: Request) -> bytes:
        raise ValueError("the handler failed")

    async def fail_midstream(self, request: Request) -> AsyncIterator[bytes]:
        yield request.payload
        raise KeyError("the stream failed")

    async def block(self, request: Request) -> bytes:
        await anyio.sleep_forever()
        return b""

    async def endless(self, request: Request) -> AsyncIterator[bytes]:
        while True:
            yield request.payload
            await anyio.sleep(0.01)

    async def huge(self, request: Request) -> bytes:
        return SECRET_PAYLOAD * (2 * self.limit // len(SECRET_PAYLOAD))


async def test_no_log_line_carries_payloads_or_header_values(
    mode: str, settings: dict[str, object]
) -> None:
    limited = {**settings, "max_message_size": LIMIT}
    limit = LIMIT
    capture = LogCapture()
    handlers = Handlers(limit)
    secret_headers = {"x-api-key": SECRET_HEADER, "authorization": "Bearer " + SECRET_HEADER}
    with capture.active():
        async with plane(mode, limited) as p:
            server = await p.server()
            names = ("echo", "stream", "fail", "fail_midstream", "block", "endless", "huge")
            a = {name: await server.register(name, getattr(handlers, name)) for name in names}
            gone = await server.register("gone", handlers.echo)
            await server.unregister("gone")
            client = p.client()
            payload = SECRET_PAYLOAD * 3
            over = SECRET_PAYLOAD * (limit // 10)
            with anyio.fail_after(BOUND):
                assert await client.request(a["echo"], payload, headers=secret_headers) == payload
                async with client.stream(a["stream"], payload, headers=secret_headers) as s:
                    assert [c async for c in s] == [payload] * 3
                await capture.expect(RemoteError, client.request(a["fail"], payload))
                await capture.expect(
                    RemoteError, _drain(client.stream(a["fail_midstream"], payload))
                )
                await capture.expect(
                    DeadlineExceeded, client.request(a["block"], payload, timeout=0.1)
                )
                with anyio.move_on_after(0.1):
                    await _drain(client.stream(a["endless"], payload, headers=secret_headers))
                await capture.expect(EndpointNotFound, client.request(gone, payload))
                await capture.expect(PayloadTooLarge, client.request(a["echo"], over))
                await capture.expect(PayloadTooLarge, client.request(a["huge"], payload))
                await _foreign_traffic(mode, server, a, capture)
                assert await client.request(a["echo"], b"still serving") == b"still serving"
            capture.note(server.health(), *a.values())
    assert capture.records, "nothing was logged at all: the capture is not working"
    leaks = capture.leaks()
    assert not leaks, "secrets in these lines:\n" + "\n".join(leaks)


async def _drain(stream: Any) -> None:
    async with stream as chunks:
        async for _ in chunks:
            pass


async def _foreign_traffic(
    mode: str, server: Server, a: dict[str, Address], capture: LogCapture
) -> None:
    """Bad input that only a foreign client sends, carrying the secrets."""
    if mode == "tcp":
        await _bad_tcp(a["echo"])
    elif mode == "http":
        await _bad_http(a["echo"], capture)
    else:
        await _bad_nats(a["echo"], capture)


async def _send_then_read_to_eof(address: Address, data: bytes) -> bytes:
    """Send ``data``, half-close, and read until the server closes or has given a whole
    HTTP/1.1 response (hypercorn keeps a half-closed keep-alive connection open)."""
    assert address.port is not None
    received = b""
    async with await anyio.connect_tcp(address.host, address.port) as sock:
        await sock.send(data)
        await sock.send_eof()
        try:
            while not _whole_http1_response(received):
                received += await sock.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
    return received


def _whole_http1_response(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 "):
        return False
    for line in head.lower().split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            return len(body) >= int(value)
    return False


async def _bad_tcp(echo: Address) -> None:
    preamble = b"\x89RQP\x01\x00\x00\x00"
    header = struct.Struct(">IBI")

    def request(rid: int, endpoint: bytes, payload: bytes, declared: int | None = None) -> bytes:
        body = struct.pack(">dHH", float("inf"), len(endpoint), 0) + endpoint + payload
        return header.pack(len(body) if declared is None else declared, 1, rid) + body

    cases = [
        SECRET_PAYLOAD + b"\x00" * 8,  # not the protocol's magic
        preamble + header.pack(len(SECRET_PAYLOAD), 99, 1) + SECRET_PAYLOAD,  # unknown kind
        preamble
        + header.pack(8 + len(SECRET_PAYLOAD), 1, 1)  # endpoint longer than the body
        + struct.pack(">dHH", 1.0, 5000, 0)[:8]
        + SECRET_PAYLOAD,
        preamble + request(1, b"echo", SECRET_PAYLOAD * 4000),  # over the limit
        preamble + request(1, b"echo", SECRET_PAYLOAD, declared=1000),  # cut off mid-frame
        preamble + request(1, b"nope\xff" + SECRET_PAYLOAD, SECRET_PAYLOAD),  # not UTF-8
    ]
    for data in cases:
        await _send_then_read_to_eof(echo, data)


async def _bad_http(echo: Address, capture: LogCapture) -> None:
    url = str(echo)
    path = "/" + echo.path
    async with httpx.AsyncClient(timeout=BOUND) as http:
        for response in (
            await http.post(url, content=SECRET_PAYLOAD * 4000),  # over the limit
            await http.post(url, content=SECRET_PAYLOAD, headers={"rp-timeout": SECRET_HEADER}),
            await http.post(url + "-missing", content=SECRET_PAYLOAD),
            await http.put(url, content=SECRET_PAYLOAD),
        ):
            assert response.status_code >= 400
            capture.note(response.text)
    raw = [
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nContent-Length: zz"
        + SECRET_PAYLOAD
        + b"\r\n\r\n"
        + SECRET_PAYLOAD,
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nrp-timeout: "
        + SECRET_HEADER.encode()
        + b"\r\nContent-Length: 19\r\n\r\n"
        + SECRET_PAYLOAD,
        SECRET_PAYLOAD + b" / HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SECRET_PAYLOAD * 10,  # garbage after the preface
    ]
    for data in raw:
        capture.note((await _send_then_read_to_eof(echo, data)).decode(errors="replace"))


async def _bad_nats(echo: Address, capture: LogCapture) -> None:
    assert echo.port is not None
    subject = echo.path.encode()
    headers = b"NATS/1.0\r\nRp-T: " + SECRET_HEADER.encode() + b"\r\nRp-S: x\r\n\r\n"
    async with await anyio.connect_tcp(echo.host, echo.port) as sock:
        await sock.receive()  # INFO
        await sock.send(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
            + b"SUB _INBOX.foreign.* 1\r\n"
            # a malformed deadline header, served all the same
            + b"HPUB %s _INBOX.foreign.1 %d %d\r\n" % (subject, len(headers), len(headers) + 19)
            + headers
            + SECRET_PAYLOAD
            + b"\r\n"
            # no reply subject: nobody waits for the answer
            + b"PUB %s 19\r\n" % subject
            + SECRET_PAYLOAD
            + b"\r\n"
            + b"PING\r\n"
        )
        answer = b""
        while SECRET_PAYLOAD not in answer:  # the echo of the first request
            answer += await sock.receive()
        capture.note(answer.decode(errors="replace").replace(SECRET_PAYLOAD.decode(), "<echo>"))


# -- NATS credentials ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    ["token", "user-password", "password-in-url"],
)
async def test_nats_credentials_stay_out_of_logs_and_errors(auth: str) -> None:
    """Bug B5 of /work/brief/bugs.md: a settings conflict printed the NATS token."""
    nats = pytest.importorskip("requestplane_nats")
    if nats.find_nats_server() is None:
        pytest.skip("nats-server is not installed")
    if auth == "token":
        config = f'authorization {{ token: "{SECRET_TOKEN}" }}'
    else:
        config = f'authorization {{ user: "reliability", password: "{SECRET_PASSWORD}" }}'
    broker = nats.NatsServerProcess(config=config)
    await anyio.to_thread.run_sync(broker.start)
    try:
        url = broker.url
        if auth == "token":
            good: dict[str, object] = {"url": url, "token": SECRET_TOKEN}
            wrong: dict[str, object] = {"url": url, "token": WRONG_SECRET}
        elif auth == "user-password":
            good = {"url": url, "user": "reliability", "password": SECRET_PASSWORD}
            wrong = {"url": url, "user": "reliability", "password": WRONG_SECRET}
        else:
            host = url.split("://", 1)[1]
            good = {"url": f"nats://reliability:{SECRET_PASSWORD}@{host}"}
            wrong = {"url": f"nats://reliability:{WRONG_SECRET}@{host}"}
        capture = LogCapture()
        with capture.active():
            await _credential_traffic(broker, good, wrong, capture)
        assert capture.records, "nothing was logged at all: the capture is not working"
        leaks = capture.leaks()
        assert not leaks, "secrets in these lines:\n" + "\n".join(leaks)
    finally:
        await anyio.to_thread.run_sync(broker.close)


def good_url_of(settings: dict[str, object]) -> str:
    """An address prefix on the broker of ``settings``, without credentials."""
    return "nats://" + str(settings["url"]).rsplit("@", 1)[-1].split("://", 1)[-1]


async def _credential_traffic(
    broker: Any, good: dict[str, object], wrong: dict[str, object], capture: LogCapture
) -> None:
    async def echo(request: Request) -> bytes:
        return request.payload

    with anyio.fail_after(BOUND * 2):
        # Refused credentials: a clear error, without them (before any server of the mode
        # runs in this event loop: a second one would be refused for that reason instead).
        async with plane("nats", wrong) as refused:
            await capture.expect(ConfigError, refused.server())
            await capture.expect(
                ConfigError, refused.client().request(f"{good_url_of(wrong)}/x", b"")
            )

        async with plane("nats", good) as p:
            server = await p.server()
            address = await server.register("echo", echo)
            assert await p.client().request(address, SECRET_PAYLOAD) == SECRET_PAYLOAD
            capture.note(address, server.health())

            # The broker goes away under a connected server and client, and comes back.
            await anyio.to_thread.run_sync(broker.kill)
            try:
                await p.client().request(address, b"", timeout=1.0)
            except RequestPlaneError as exc:
                capture.note(exc)
            await anyio.to_thread.run_sync(broker.start)
            with anyio.move_on_after(BOUND):
                while not server.health().details.get("connected"):
                    await anyio.wait_all_tasks_blocked()
            # The client reconnects on its own schedule, maybe after the server: until then
            # its calls get Unavailable (retriable: nothing was sent), as a caller would.
            with anyio.fail_after(BOUND):
                while True:
                    try:
                        assert await p.client().request(address, b"back") == b"back"
                        break
                    except Unavailable as exc:
                        capture.note(exc)
                        await anyio.sleep(0.05)
            capture.note(server.health())

            # Another manager of the mode with other settings in the same event loop.
            other = {**good, "request_timeout": 7.0}
            async with plane("nats", other) as conflicting:
                await capture.expect(ConfigError, conflicting.server())
