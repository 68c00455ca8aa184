"""TLS and mutual TLS, with certificates made by trustme for each test session."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import anyio
import pytest
import trustme
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream
from requestplane_tcp.framing import ERROR, PREAMBLE, RESPONSE
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    frame,
    parse_frames,
    read_to_eof,
    request_frame,
    running,
)

from requestplane_core import Address, ConnectionLost, ProtocolError, Request
from requestplane_core.testing import TransportConformance

pytestmark = pytest.mark.anyio


class Certs:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.ca_file = self._write(root / "ca.pem", self.ca.cert_pem)
        self.other_ca_file = self._write(root / "other-ca.pem", self.other_ca.cert_pem)
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_pem = self._write(root / "server.pem", server.private_key_and_cert_chain_pem)
        # The same certificate split in two files, the way many deployments ship them.
        self.server_cert = self._write(root / "server-cert.pem", *server.cert_chain_pems)
        self.server_key = self._write(root / "server-key.pem", server.private_key_pem)
        untrusted = self.other_ca.issue_cert("127.0.0.1")
        self.untrusted_server_pem = self._write(
            root / "untrusted-server.pem", untrusted.private_key_and_cert_chain_pem
        )
        worker = self.ca.issue_cert("worker-1@requestplane.test")
        self.client_pem = self._write(root / "client.pem", worker.private_key_and_cert_chain_pem)
        stranger = self.other_ca.issue_cert("stranger@elsewhere.test")
        self.stranger_pem = self._write(
            root / "stranger.pem", stranger.private_key_and_cert_chain_pem
        )

    @staticmethod
    def _write(path: Path, *blobs: trustme.Blob) -> str:
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
        return str(path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "requestplane.tcp" and r.levelno >= logging.WARNING
    ]


async def _stream_one(request: Request) -> object:
    async def chunks() -> object:
        yield b"a"
        yield b"b"

    return chunks()


async def test_tls_round_trip(certs: Certs) -> None:
    async def count(request: Request) -> object:
        for i in range(3):
            yield b"%d" % i

    server = {"tls": True, "tls_cert": certs.server_cert, "tls_key": certs.server_key}
    async with (
        running({"echo": echo, "count": count}, **server) as (srv, addresses),
        client(tls=True, tls_ca=certs.ca_file) as c,
    ):
        with anyio.fail_after(BOUND):
            assert await c.request(addresses["echo"], b"secret") == b"secret"
            assert [x async for x in c.stream(addresses["count"], b"")] == [b"0", b"1", b"2"]
        assert srv.health().details["tls"] is True


async def test_client_that_does_not_trust_the_server(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    server = {"tls": True, "tls_cert": certs.untrusted_server_pem}
    async with running({"echo": echo}, **server) as (_srv, addresses):
        async with client(tls=True, tls_ca=certs.ca_file) as c:
            with (
                anyio.fail_after(BOUND),
                pytest.raises(ProtocolError, match="does not trust the server's certificate"),
            ):
                await c.request(addresses["echo"], b"")
        # and the server goes on serving clients that do trust it
        async with client(tls=True, tls_ca=certs.other_ca_file) as trusting:
            with anyio.fail_after(BOUND):
                assert await trusting.request(addresses["echo"], b"ok") == b"ok"
    assert any("TLS handshake failed" in line for line in _warnings(caplog))


async def test_wrong_server_name_is_not_trusted(certs: Certs) -> None:
    server = {"tls": True, "tls_cert": certs.server_pem}
    async with (
        running({"echo": echo}, **server) as (_srv, addresses),
        client(tls=True, tls_ca=certs.ca_file, tls_server_name="db.internal") as c,
    ):
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError, match="does not trust"):
            await c.request(addresses["echo"], b"")


_MUTUAL = ("tls", "tls_cert", "tls_client_ca")


def _mutual_server(certs: Certs) -> dict[str, object]:
    return {"tls": True, "tls_cert": certs.server_pem, "tls_client_ca": certs.ca_file}


async def test_mutual_tls(certs: Certs) -> None:
    async with (
        running({"echo": echo}, **_mutual_server(certs)) as (_srv, addresses),
        client(tls=True, tls_ca=certs.ca_file, tls_client_cert=certs.client_pem) as c,
    ):
        with anyio.fail_after(BOUND):
            assert await c.request(addresses["echo"], b"mutual") == b"mutual"


@pytest.mark.parametrize("who", ["no certificate", "a certificate of another CA"])
async def test_server_that_does_not_trust_the_client(
    certs: Certs, who: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    settings: dict[str, object] = {"tls": True, "tls_ca": certs.ca_file}
    if who != "no certificate":
        settings["tls_client_cert"] = certs.stranger_pem
    async with running({"echo": echo}, **_mutual_server(certs)) as (_srv, addresses):
        async with client(**settings) as c:
            with (
                anyio.fail_after(BOUND),
                pytest.raises(ProtocolError, match="server refused this client's certificate"),
            ):
                await c.request(addresses["echo"], b"")
        async with client(
            tls=True, tls_ca=certs.ca_file, tls_client_cert=certs.client_pem
        ) as trusted:
            with anyio.fail_after(BOUND):
                assert await trusted.request(addresses["echo"], b"ok") == b"ok"
    assert any("TLS handshake failed" in line for line in _warnings(caplog))


async def test_plaintext_client_to_a_tls_server(certs: Certs) -> None:
    async with (
        running({"echo": echo}, tls=True, tls_cert=certs.server_pem) as (
            _srv,
            addresses,
        ),
        client() as c,
    ):
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError):
            await c.request(addresses["echo"], b"")


async def test_tls_client_to_a_plaintext_server(certs: Certs) -> None:
    async with (
        running({"echo": echo}) as (_srv, addresses),
        client(tls=True, tls_ca=certs.ca_file) as c,
    ):
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError, match="TLS"):
            await c.request(addresses["echo"], b"")


async def _tls_connect(address: Address, certs: Certs) -> TLSStream:
    assert address.port is not None
    context = ssl.create_default_context(cafile=certs.ca_file)
    tcp = await anyio.connect_tcp(address.host, address.port)
    stream = await TLSStream.wrap(
        tcp, hostname=address.host, ssl_context=context, standard_compatible=False
    )
    await stream.send(PREAMBLE)
    return stream


@pytest.mark.parametrize("sent", ["preamble", "half a frame"])
async def test_idle_and_stalled_tls_connections_are_closed(certs: Certs, sent: str) -> None:
    """The receive loop TLS reads through closes them like the plain ones."""
    server = {"tls": True, "tls_cert": certs.server_pem}
    timeouts = (
        {"idle_timeout": 0.3} if sent == "preamble" else {"idle_timeout": 5, "frame_timeout": 0.3}
    )
    async with running({"echo": echo}, **server, **timeouts) as (_srv, addresses):
        with anyio.fail_after(BOUND):
            stream = await _tls_connect(addresses["echo"], certs)
            if sent == "half a frame":
                await stream.send(request_frame(1, "echo", b"x" * 100)[:50])
            answer = await read_to_eof(stream)
            await stream.aclose()
        assert answer.startswith(PREAMBLE)
        frames = parse_frames(answer[len(PREAMBLE) :])
        if sent == "preamble":
            assert frames == []
        else:
            assert frames[-1][:2] == (ERROR, 0)
            assert b"REQUESTPLANE_TCP_FRAME_TIMEOUT" in frames[-1][2]


async def test_a_tls_server_vanishing_mid_frame_is_connection_lost(certs: Certs) -> None:
    context = certs.ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.configure_cert(server_context)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    address = Address("tcp", "127.0.0.1", listener.extra(SocketAttribute.local_port), "x")

    async def vanish_mid_frame(tcp: anyio.abc.SocketStream) -> None:
        stream = await TLSStream.wrap(tcp, server_side=True, ssl_context=server_context)
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        await reader.preamble()
        _kind, rid, _body = await reader.frame()
        await stream.send(frame(RESPONSE, rid, b"r" * 100)[:40])
        await tcp.aclose()  # no close_notify: the TCP connection just ends

    async with anyio.create_task_group() as tg, client(tls=True, tls_ca=certs.ca_file) as c:
        tg.start_soon(listener.serve, vanish_mid_frame)
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost) as info:
            await c.request(address, b"")
        tg.cancel_scope.cancel()
    assert not isinstance(info.value, ProtocolError)
    assert "middle of a frame" in str(info.value)


class TestTcpMutualTlsConformance(TransportConformance):
    """The whole conformance suite again, every connection over mutual TLS."""

    mode = "tcp"
    settings: ClassVar[Mapping[str, object]] = {}

    @pytest.fixture
    def transport_settings(self, certs: Certs) -> Mapping[str, object]:
        return {
            "tls": True,
            "tls_cert": certs.server_pem,
            "tls_client_ca": certs.ca_file,
            "tls_ca": certs.ca_file,
            "tls_client_cert": certs.client_pem,
        }


async def test_large_calls_both_ways_at_once_over_tls(certs: Certs) -> None:
    # 32 concurrent 512 KiB echoes fill both directions' socket buffers at once. The TLS
    # stream's reader once waited for the send lock behind a writer blocked on a full
    # socket: neither side read again and every call hung (no cancellation needed).
    size = 1 << 19
    server = {"tls": True, "tls_cert": certs.server_cert, "tls_key": certs.server_key}
    async with (
        running({"echo": echo}, **server) as (_srv, addresses),
        client(tls=True, tls_ca=certs.ca_file) as c,
    ):
        answers: dict[int, bytes] = {}

        async def call(i: int) -> None:
            answers[i] = await c.request(addresses["echo"], bytes([i]) * size)

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(32):
                    tg.start_soon(call, i)
    wrong = [i for i, body in answers.items() if body != bytes([i]) * size]
    assert sorted(answers) == list(range(32)) and not wrong
