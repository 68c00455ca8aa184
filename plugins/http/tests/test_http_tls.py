"""TLS and mutual TLS with certificates made for the test (trustme): https:// addresses, both
HTTP versions, and a clear ConnectionLost when either side does not trust the other."""

from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

import anyio
import httpx
import pytest
import trustme
from http_test_helpers import BOUND, http_settings, served
from requestplane_http.client import HttpClient
from requestplane_http.server import HttpServer

from requestplane_core import ConfigError, ConnectionLost, Dispatcher

pytestmark = pytest.mark.anyio


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.ca_file = self._write("ca.pem", self.ca.cert_pem)
        self.other_ca_file = self._write("other-ca.pem", self.other_ca.cert_pem)
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert = self._write("server.pem", *server.cert_chain_pems)
        self.server_key = self._write("server.key", server.private_key_pem)
        client = self.ca.issue_cert("client@example.com")
        self.client_cert = self._write("client.pem", *client.cert_chain_pems)
        self.client_key = self._write("client.key", client.private_key_pem)
        rogue = self.other_ca.issue_cert("rogue@example.com")
        self.rogue_cert = self._write("rogue.pem", *rogue.cert_chain_pems)
        self.rogue_key = self._write("rogue.key", rogue.private_key_pem)

    def _write(self, name: str, *blobs: trustme.Blob) -> str:
        path = self.dir / name
        path.write_bytes(b"".join(blob.bytes() for blob in blobs))
        return str(path)

    def server(self, **extra: object) -> dict[str, object]:
        return {"tls_cert_file": self.server_cert, "tls_key_file": self.server_key, **extra}

    def mutual(self) -> dict[str, object]:
        return self.server(tls_client_ca_file=self.ca_file, tls_require_client_cert=True)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


LANES = {"h2": {"http1_threshold": 1 << 30}, "http1": {"http1_threshold": 1}}


@pytest.fixture(params=sorted(LANES))
def lane(request: pytest.FixtureRequest) -> dict[str, object]:
    return LANES[str(request.param)]


async def test_tls_round_trip(pki: Pki, lane: dict[str, object]) -> None:
    async with served(pki.server(), {"tls_ca_file": pki.ca_file, **lane}) as s:
        assert s.addr("echo").scheme == "https"
        with anyio.fail_after(BOUND):
            assert await s.client.request(s.addr("echo"), b"secret") == b"secret"
            assert [c async for c in s.client.stream(s.addr("chunks"), b"a,b")] == [b"a", b"b"]
        assert s.server.health().details["scheme"] == "https"


async def test_foreign_client_over_tls(pki: Pki) -> None:
    context = ssl.create_default_context(cafile=pki.ca_file)
    async with served(pki.server()) as s:
        for http2 in (False, True):
            async with httpx.AsyncClient(verify=context, http2=http2) as http:
                with anyio.fail_after(BOUND):
                    response = await http.post(s.url("echo"), content=b"hi")
            assert response.status_code == 200 and response.content == b"hi"
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


async def test_the_cli_calls_an_https_address(pki: Pki, anyio_backend: str) -> None:
    # The address's scheme picks the transport: https must lead to this plugin, not to an
    # UnknownMode 'https'.
    async with served(pki.server()) as s:
        env = {**os.environ, "REQUESTPLANE_HTTP_TLS_CA_FILE": pki.ca_file}
        command = [sys.executable, "-m", "requestplane_core.cli", "call", s.url("echo")]
        with anyio.fail_after(BOUND * 2):
            done = await anyio.run_process(
                [*command, "--data", "over tls", "--backend", anyio_backend],
                env=env,
                check=False,
            )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"over tls", b"")


async def test_untrusted_server_is_a_clear_connection_lost(
    pki: Pki, lane: dict[str, object]
) -> None:
    async with served(pki.server(), {"tls_ca_file": pki.other_ca_file, **lane}) as s:
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost, match="not trusted"):
            await s.client.request(s.addr("echo"), b"x")


async def test_plain_client_to_tls_server_fails_typed_with_a_hint(
    pki: Pki, lane: dict[str, object]
) -> None:
    # The TLS server closes the connection without a byte: the client says what that means.
    async with served(pki.server(), {"tls_ca_file": pki.ca_file}) as s:
        address = str(s.addr("echo")).replace("https://", "http://")
        async with HttpClient(http_settings(**lane)) as client:
            with anyio.fail_after(BOUND), pytest.raises(ConnectionLost, match="speaking TLS"):
                await client.request(address, b"x")
        with anyio.fail_after(BOUND):
            assert await s.client.request(s.addr("echo"), b"still up") == b"still up"


async def test_mutual_tls(pki: Pki, lane: dict[str, object]) -> None:
    client = {
        "tls_ca_file": pki.ca_file,
        "tls_client_cert_file": pki.client_cert,
        "tls_client_key_file": pki.client_key,
        **lane,
    }
    async with served(pki.mutual(), client) as s:
        with anyio.fail_after(BOUND):
            assert await s.client.request(s.addr("echo"), b"both ways") == b"both ways"


@pytest.mark.parametrize("who", ["anonymous", "rogue"])
async def test_server_refuses_untrusted_clients(
    pki: Pki, lane: dict[str, object], who: str
) -> None:
    client: dict[str, object] = {"tls_ca_file": pki.ca_file, **lane}
    if who == "rogue":
        client.update(tls_client_cert_file=pki.rogue_cert, tls_client_key_file=pki.rogue_key)
    async with served(pki.mutual(), client) as s:
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost, match="client certificate"):
            await s.client.request(s.addr("echo"), b"x")


async def test_tls_files_that_do_not_load_are_a_config_error(pki: Pki) -> None:
    # The key of another certificate: the files exist, but do not belong together.
    server = HttpServer(http_settings(**pki.server(tls_key_file=pki.client_key)))
    async with anyio.create_task_group() as tg:
        with pytest.raises(ConfigError, match="TLS_KEY_FILE"):
            await server.start(Dispatcher(), tg)
