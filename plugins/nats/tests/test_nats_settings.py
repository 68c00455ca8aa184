"""REQUESTPLANE_NATS_* parsing and the subject scheme."""

from __future__ import annotations

import anyio
import pytest
from nats_test_helpers import nats_client_of, nats_server_of
from requestplane_nats import NatsSettings
from requestplane_nats.subjects import (
    cancel_subject_for,
    endpoint_from_subject,
    endpoint_subject,
    instance_subject,
    valid_subject,
)

from requestplane_core import ConfigError, Request, describe_settings, load_settings

PREFIX = "REQUESTPLANE_NATS_"


def load(**env: str) -> NatsSettings:
    environ = {PREFIX + key: value for key, value in env.items()}
    return load_settings(NatsSettings, prefix=PREFIX, environ=environ)


def test_defaults_and_environment() -> None:
    settings = load()
    assert settings.url is None and settings.urls() == ["nats://127.0.0.1:4222"]
    assert settings.request_timeout == 30.0 and not settings.tls
    settings = load(URL="nats://a:1, tls://b:2", REQUEST_TIMEOUT="none", TLS_CA="/ca.pem")
    assert settings.urls() == ["nats://a:1", "tls://b:2"]
    assert settings.request_timeout is None and settings.tls


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("URL", "http://x:1"),
        ("URL", "nats://x:99999"),
        ("URL", "nats://x:1,"),
        ("SUBJECT_PREFIX", "a.*"),
        ("SUBJECT_PREFIX", "a..b"),
        ("QUEUE_GROUP", "two words"),
        ("ADDRESS_SCOPE", "everyone"),
        ("INSTANCE", "_x"),
        ("INSTANCE", "cancel"),
        ("CONNECT_TIMEOUT", "0"),
        ("MAX_RECONNECT_ATTEMPTS", "-2"),
        ("EMBEDDED", "maybe"),
    ],
)
def test_malformed_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=PREFIX + var):
        load(**{var: value})


def test_secrets_stay_hidden() -> None:
    rows = {row.name: row for row in describe_settings(NatsSettings, PREFIX)}
    assert rows["token"].secret and rows["password"].secret
    assert not rows["user"].secret
    with pytest.raises(ConfigError) as info:
        load_settings(NatsSettings, prefix=PREFIX, environ={}, overrides={"token": 42})
    assert "42" not in str(info.value)


def test_subject_scheme() -> None:
    assert endpoint_subject("rp", "echo") == "rp.echo"
    assert endpoint_subject("rp", "ns.comp.ep") == "rp.ns.comp.ep"
    assert instance_subject("rp", "ns.comp.ep", "i1") == "rp.ns.comp.ep._i1"
    assert cancel_subject_for("rp.ns.comp.ep") == "rp.ns.comp.ep._cancel"
    assert cancel_subject_for("rp.ns.comp.ep._i1") == "rp.ns.comp.ep._cancel"
    names = ["a.b", "a..b", ".a", "a.", "_cancel", "%5Fcancel", "*", ">", "a b", "é", "%", "%25"]
    subjects = [endpoint_subject("rp", n) for n in names]
    assert len(set(subjects)) == len(names)  # escaping keeps names apart
    assert all(valid_subject(s) for s in subjects)
    assert all(not s.split(".", 1)[1].startswith("_") for s in subjects)


@pytest.mark.anyio
async def test_no_request_timeout_means_no_deadline(nats_url: str) -> None:
    deadlines: list[float | None] = []

    async def record(request: Request) -> bytes:
        deadlines.append(request.deadline)
        return b"ok"

    settings = {"url": nats_url, "request_timeout": None}
    with anyio.fail_after(10):
        async with nats_server_of(settings) as server:
            address = await server.register("record", record)
            async with nats_client_of(settings) as client:
                assert await client.request(address, b"") == b"ok"
                assert await client.request(address, b"", timeout=5) == b"ok"
    assert deadlines[0] is None and deadlines[1] is not None


@pytest.mark.parametrize(
    "endpoint", ["echo", "llm.backend.generate", "_private", "odd*name>", "100%", "a..b", ""]
)
def test_an_endpoint_survives_its_subjects(endpoint: str) -> None:
    shared = endpoint_subject("requestplane", endpoint)
    assert endpoint_from_subject("requestplane", shared) == endpoint
    assert (
        endpoint_from_subject("requestplane", instance_subject("requestplane", endpoint, "i1"))
        == endpoint
    )
