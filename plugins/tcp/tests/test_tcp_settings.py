"""Settings from the environment, cross-setting checks, addresses and plugin discovery."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from requestplane_tcp.settings import TcpSettings
from tcp_test_helpers import BOUND, echo, make_settings, running, spec

from requestplane_core import (
    ConfigError,
    RequestPlane,
    describe_settings,
    load_plugins,
    load_settings,
)

PREFIX = "REQUESTPLANE_TCP_"


def _load(**env: str) -> TcpSettings:
    return load_settings(
        TcpSettings, prefix=PREFIX, environ={PREFIX + k.upper(): v for k, v in env.items()}
    )


def test_defaults() -> None:
    s = _load()
    assert (s.host, s.port, s.advertise_host) == ("127.0.0.1", 0, None)
    assert s.max_message_size == 32 * 1024 * 1024
    assert (s.connect_timeout, s.request_timeout) == (10.0, None)
    # HTTP's keep-alive (REQUESTPLANE_HTTP_KEEP_ALIVE_TIMEOUT) for idle connections.
    assert (s.idle_timeout, s.frame_timeout) == (75.0, 60.0)
    assert not s.tls


def test_values_from_the_environment() -> None:
    s = _load(
        host="0.0.0.0",
        port="8123",
        advertise_host="worker-7.internal",
        max_message_size="1048576",
        connect_timeout="2.5",
        request_timeout="30",
        tls="yes",
        tls_cert="/etc/rp/cert.pem",
    )
    assert (s.host, s.port, s.advertise_host) == ("0.0.0.0", 8123, "worker-7.internal")
    assert (s.max_message_size, s.connect_timeout, s.request_timeout) == (1048576, 2.5, 30.0)
    assert s.tls and s.tls_cert == Path("/etc/rp/cert.pem")
    assert _load(request_timeout="none").request_timeout is None
    s = _load(idle_timeout="2.5", frame_timeout="none")
    assert (s.idle_timeout, s.frame_timeout) == (2.5, None)
    assert _load(idle_timeout="none").idle_timeout is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", "70000"),
        ("port", "-1"),
        ("port", "http"),
        ("max_message_size", "0"),
        ("max_message_size", str(2**32)),
        ("connect_timeout", "0"),
        ("connect_timeout", "inf"),
        ("request_timeout", "-5"),
        ("request_timeout", "soon"),
        ("idle_timeout", "0"),
        ("idle_timeout", "forever"),
        ("frame_timeout", "-1"),
        ("frame_timeout", "inf"),
        ("host", "   "),
        ("tls", "maybe"),
    ],
)
def test_malformed_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=PREFIX + name.upper()) as info:
        _load(**{name: value})
    assert "expected" in str(info.value)


def test_every_setting_is_documented() -> None:
    fields = describe_settings(TcpSettings, PREFIX)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for field in fields:
        assert field.help and field.accepts
        assert field.env_var in readme, f"{field.env_var} missing from README.md"


def test_tls_files_without_tls_are_refused() -> None:
    with pytest.raises(ConfigError, match="TLS is off"):
        spec().client(make_settings(tls_ca="/nonexistent/ca.pem"))
    with pytest.raises(ConfigError, match="TLS_CLIENT_CA"):
        spec().server(make_settings(tls_client_ca="/nonexistent/ca.pem"))


def test_a_tls_server_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="TLS_CERT is not set"):
        spec().server(make_settings(tls=True))


def test_unreadable_certificates_name_the_files_not_the_contents(tmp_path: Path) -> None:
    bogus = tmp_path / "cert.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as info:
        spec().server(make_settings(tls=True, tls_cert=str(bogus)))
    assert str(bogus) in str(info.value)
    assert "c2VjcmV0" not in str(info.value)
    with pytest.raises(ConfigError, match="TLS_CA"):
        spec().client(make_settings(tls=True, tls_ca=str(tmp_path / "missing.pem")))


def test_the_entry_point_provides_the_transport() -> None:
    registry = load_plugins(only="tcp")
    loaded = registry.transport("tcp")
    assert loaded.distribution == "requestplane-tcp"
    assert loaded.spec.settings is TcpSettings
    assert loaded.spec.capabilities.streaming and loaded.spec.capabilities.cancellation


@pytest.mark.anyio
async def test_env_reaches_the_transport_through_the_manager() -> None:
    env = {"REQUESTPLANE_MODE": "tcp", PREFIX + "ADVERTISE_HOST": "localhost"}
    async with RequestPlane(environ=env) as plane:
        server = await plane.server()
        address = await server.register("echo", echo)
        assert address.host == "localhost"
        assert address.scheme == "tcp" and address.port
        with anyio.fail_after(BOUND):
            assert await plane.client().request(address, b"via env") == b"via env"


@pytest.mark.anyio
async def test_a_wildcard_bind_advertises_a_reachable_address() -> None:
    async with running({"echo": echo}, host="0.0.0.0") as (server, addresses):
        address = addresses["echo"]
        assert address.host not in ("0.0.0.0", "", "::")
        assert server.health().details["host"] == "0.0.0.0"
        async with spec().client(make_settings()) as c:
            with anyio.fail_after(BOUND):
                assert await c.request(address, b"reached") == b"reached"


@pytest.mark.anyio
async def test_bind_failure_is_a_clear_error() -> None:
    # serve() lets a transport's ConfigError out as it is (no ExceptionGroup around it).
    async with running({"echo": echo}) as (_server, addresses):
        port = addresses["echo"].port
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:") as caught:
            async with running({"echo": echo}, port=port):
                pass
    # A newcomer learns which variable sets the port, and its value.
    assert f"REQUESTPLANE_TCP_PORT sets the port (now {port})" in str(caught.value)


@pytest.mark.anyio
async def test_a_host_that_is_not_this_machines_names_the_host_variable() -> None:
    # 192.0.2.1 (TEST-NET-1) is never an address of this machine: EADDRNOTAVAIL.
    with pytest.raises(ConfigError, match=r"cannot listen on 192\.0\.2\.1:") as caught:
        async with running({"echo": echo}, host="192.0.2.1"):
            pass
    assert "REQUESTPLANE_TCP_HOST sets the interface (now '192.0.2.1')" in str(caught.value)
