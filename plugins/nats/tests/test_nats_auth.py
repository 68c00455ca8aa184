"""Credentials and TLS passed through to a real nats-server started with auth."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trustme
from nats_test_helpers import echo, nats_client_of, nats_server_of
from requestplane_nats import NatsServerProcess

from requestplane_core import ConfigError, ProtocolError, RequestPlaneError, Unavailable

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-s3cret"
PASSWORD = "pass w0rd"


@pytest.fixture(scope="module")
def token_nats() -> Iterator[NatsServerProcess]:
    with NatsServerProcess(config=f'authorization {{ token: "{TOKEN}" }}\n') as server:
        yield server


@pytest.fixture(scope="module")
def user_nats() -> Iterator[NatsServerProcess]:
    config = f'authorization {{ user: alice, password: "{PASSWORD}" }}\n'
    with NatsServerProcess(config=config) as server:
        yield server


class Pki:
    def __init__(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca = directory / "ca.pem"
        ca.cert_pem.write_to_path(self.ca)
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert, self.server_key = directory / "server.pem", directory / "server.key"
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        client = ca.issue_cert("client.requestplane.test")
        self.client_cert, self.client_key = directory / "client.pem", directory / "client.key"
        client.cert_chain_pems[0].write_to_path(self.client_cert)
        client.private_key_pem.write_to_path(self.client_key)
        other = trustme.CA()
        self.other_ca = directory / "other-ca.pem"
        other.cert_pem.write_to_path(self.other_ca)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_nats(pki: Pki) -> Iterator[NatsServerProcess]:
    config = f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}" }}\n'
    with NatsServerProcess(config=config) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_nats(pki: Pki) -> Iterator[NatsServerProcess]:
    config = (
        f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}", '
        f'ca_file: "{pki.ca}", verify: true }}\n'
    )
    with NatsServerProcess(config=config) as server:
        yield server


async def roundtrip(settings: dict[str, object]) -> bytes:
    with anyio.fail_after(15):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            async with nats_client_of(settings) as client:
                return await client.request(address, b"secure")


Expected = type[RequestPlaneError] | tuple[type[RequestPlaneError], ...]


async def refused(
    server_settings: dict[str, object],
    client_settings: dict[str, object],
    error: Expected = ConfigError,
) -> RequestPlaneError:
    with anyio.fail_after(15):
        async with nats_server_of(server_settings) as server:
            address = await server.register("echo", echo)
            async with nats_client_of(client_settings) as client:
                with pytest.raises(error) as info:
                    await client.request(address, b"x")
    return info.value


async def test_token(token_nats: NatsServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = {"url": token_nats.url, "token": TOKEN}
    assert await roundtrip(good) == b"secure"
    err = await refused(good, {"url": token_nats.url, "token": "wrong-token"})
    assert "refused the credentials" in str(err) and "token" in str(err)
    await refused(good, {"url": token_nats.url})
    for text in [str(err), caplog.text]:
        assert TOKEN not in text and "wrong-token" not in text


async def test_user_password(
    user_nats: NatsServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = {"url": user_nats.url, "user": "alice", "password": PASSWORD}
    assert await roundtrip(good) == b"secure"
    err = await refused(good, {**good, "password": "not it"})
    assert "REQUESTPLANE_NATS_" in str(err)
    for text in [str(err), caplog.text]:
        assert PASSWORD not in text and "not it" not in text


async def test_server_with_wrong_credentials_fails_to_start(token_nats: NatsServerProcess) -> None:
    with anyio.fail_after(15), pytest.raises(ConfigError, match="refused the credentials"):
        async with nats_server_of({"url": token_nats.url, "token": "nope"}):
            pass


async def test_tls(tls_nats: NatsServerProcess, pki: Pki) -> None:
    good = {"url": tls_nats.url, "tls_ca": str(pki.ca)}
    assert await roundtrip(good) == b"secure"
    err = await refused(good, {"url": tls_nats.url, "tls_ca": str(pki.other_ca)}, ProtocolError)
    assert "TLS" in str(err)
    # the system CAs do not know our test CA
    await refused(good, {"url": tls_nats.url}, ProtocolError)


async def test_tls_settings_against_a_plain_server_are_refused(nats_url: str, pki: Pki) -> None:
    async with nats_client_of({"url": nats_url, "tls_ca": str(pki.ca)}) as client:
        with anyio.fail_after(15), pytest.raises(ProtocolError, match="does not use TLS"):
            await client.request(f"nats://{nats_url[7:]}/requestplane.echo", b"")


async def test_mutual_tls(mtls_nats: NatsServerProcess, pki: Pki) -> None:
    good = {
        "url": mtls_nats.url,
        "tls_ca": str(pki.ca),
        "tls_cert": str(pki.client_cert),
        "tls_key": str(pki.client_key),
    }
    assert await roundtrip(good) == b"secure"
    # no client certificate: the server refuses the handshake
    # (TLS 1.3 sends that refusal after the handshake: depending on timing the client sees
    # the alert or a reset connection)
    err = await refused(
        good, {"url": mtls_nats.url, "tls_ca": str(pki.ca)}, (ProtocolError, Unavailable)
    )
    assert "certificate" in str(err)


async def test_unreadable_tls_files_are_config_errors(
    tls_nats: NatsServerProcess, tmp_path: Path
) -> None:
    async with nats_client_of(
        {"url": tls_nats.url, "tls_ca": str(tmp_path / "missing.pem")}
    ) as client:
        with anyio.fail_after(10), pytest.raises(ConfigError, match="TLS settings"):
            await client.request(f"nats://{tls_nats.url[7:]}/requestplane.echo", b"")
