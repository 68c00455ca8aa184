"""Subjects: queue-group load balancing, per-instance subjects, no responders, embedded."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest
from nats_test_helpers import address_of, echo, make_settings, nats_client_of, nats_server_of
from requestplane_nats.plugin import requestplane_transports

from requestplane_core import Address, ConfigError, EndpointNotFound, Request

pytestmark = pytest.mark.anyio


def tagged(tag: str):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> bytes:
        return tag.encode()

    return handler


async def test_shared_subject_is_load_balanced_over_instances(nats_url: str) -> None:
    settings = {"url": nats_url}
    with anyio.fail_after(20):
        async with nats_server_of(settings) as one, nats_server_of(settings) as two:
            a = await one.register("work", tagged("one"))
            b = await two.register("work", tagged("two"))
            assert a == b  # the shared subject: an address any instance answers
            assert a.path == "requestplane.work"
            async with nats_client_of(settings) as client:
                seen = Counter([await client.request(a, b"") for _ in range(60)])
    # A queue group gives each request to one member; 60 requests all landing on one of two
    # members would happen with probability 2**-59.
    assert set(seen) == {b"one", b"two"}
    assert sum(seen.values()) == 60


async def test_instance_subject_reaches_one_server(nats_url: str) -> None:
    shared = {"url": nats_url}
    scoped = {**shared, "address_scope": "instance"}
    with anyio.fail_after(20):
        async with (
            nats_server_of({**scoped, "instance": "w1"}) as one,
            nats_server_of({**scoped, "instance": "w2"}) as two,
        ):
            a = await one.register("work", tagged("one"))
            b = await two.register("work", tagged("two"))
            assert a.path == "requestplane.work._w1" and b.path == "requestplane.work._w2"
            async with nats_client_of(shared) as client:
                assert {await client.request(a, b"") for _ in range(20)} == {b"one"}
                assert {await client.request(b, b"") for _ in range(20)} == {b"two"}
                # the shared subject still balances over both
                shared_addr = Address(a.scheme, a.host, a.port, "requestplane.work")
                seen = {await client.request(shared_addr, b"") for _ in range(60)}
                assert seen == {b"one", b"two"}


async def test_endpoint_names_become_subject_levels(nats_url: str) -> None:
    settings = {"url": nats_url, "subject_prefix": "acme.prod"}
    with anyio.fail_after(10):
        async with nats_server_of(settings) as server:
            address = await server.register("llm.backend.generate", echo)
            odd = await server.register("_odd*name>", echo)
            assert address.path == "acme.prod.llm.backend.generate"
            assert odd.path == "acme.prod.%5Fodd%2Aname%3E"
            async with nats_client_of(settings) as client:
                assert await client.request(address, b"a") == b"a"
                assert await client.request(odd, b"b") == b"b"


async def test_no_responders_is_endpoint_not_found(nats_url: str) -> None:
    async with nats_client_of({"url": nats_url}) as client:
        nobody = address_of(nats_url, "requestplane.nobody.here")
        with anyio.fail_after(10), pytest.raises(EndpointNotFound):
            await client.request(nobody, b"x")
        with anyio.fail_after(10), pytest.raises(EndpointNotFound):
            async with client.stream(nobody, b"x") as chunks:
                async for _ in chunks:
                    pass
        assert client.stats.errors == 2


async def test_client_without_url_follows_the_address(nats_url: str) -> None:
    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("echo", echo)
            assert f"nats://{address.host}:{address.port}" == nats_url
            async with nats_client_of({}) as client:  # no url: the address names the server
                assert await client.request(address, b"followed") == b"followed"


async def test_embedded_server(nats_url: str) -> None:
    with anyio.fail_after(20):
        async with nats_server_of({"embedded": True}) as server:
            address = await server.register("echo", echo)
            assert server.health().details["embedded_server"] is True
            assert f"nats://{address.host}:{address.port}" != nats_url
            async with nats_client_of({}) as client:
                assert await client.request(address, b"embedded") == b"embedded"
        # the embedded nats-server is gone with the server
        with pytest.raises(OSError):
            await anyio.connect_tcp(address.host, address.port or 0)


def test_embedded_with_url_is_a_config_error(nats_url: str) -> None:
    spec = requestplane_transports()[0]
    with pytest.raises(ConfigError, match="EMBEDDED"):
        spec.server(make_settings(embedded=True, url=nats_url))


async def test_not_a_nats_address(nats_url: str) -> None:
    async with nats_client_of({"url": nats_url}) as client:
        with pytest.raises(ConfigError):
            await client.request("tcp://127.0.0.1:1/echo", b"")
        with pytest.raises(ConfigError):
            await client.request(address_of(nats_url, "requestplane.*"), b"")


async def test_request_right_after_unregister_is_answered(nats_url: str) -> None:
    """No request may fall into the gap between our UNSUB and nats-server processing it."""
    settings = {"url": nats_url}
    with anyio.fail_after(60):
        async with nats_server_of(settings) as server, nats_client_of(settings) as client:
            for _ in range(25):
                address = await server.register("flicker", echo)
                async with anyio.create_task_group() as tg:

                    async def hammer(address: Address) -> None:
                        # requests racing the unregister: each ends answered or not found
                        for _ in range(20):
                            try:
                                await client.request(address, b"x", timeout=10)
                            except EndpointNotFound:
                                return

                    tg.start_soon(hammer, address)
                    await server.unregister("flicker")
                with pytest.raises(EndpointNotFound):
                    await client.request(address, b"x", timeout=10)
