"""``nats`` discovery against a real nats-server with JetStream: publish, list, watch, expiry
of a SIGKILLed worker, the errors of a server without JetStream or without a server, a store
restart, and TCP transport + NATS discovery end to end."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
import trustme
from anyio.abc import Process
from requestplane_nats import NatsServerProcess
from requestplane_nats.discovery_backend import NatsDiscovery, key_of
from requestplane_nats.discovery_settings import ENV_PREFIX, NatsDiscoverySettings

from requestplane_core import (
    Address,
    ConfigError,
    ProtocolError,
    Request,
    RequestPlane,
    Unavailable,
    load_plugins,
    load_settings,
)
from requestplane_core.discovery import Added, Instance, Removed, Snapshot, Watch, WatchEvent
from requestplane_core.testing import DiscoveryConformance
from requestplane_core.testing.discovery_conformance import StoreRestart

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("nats_discovery_worker.py")


def jetstream_server(store: Path) -> NatsServerProcess:
    return NatsServerProcess(config=f'jetstream {{ store_dir: "{store}" }}\n')


@pytest.fixture(scope="module")
def js_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServerProcess]:
    with jetstream_server(tmp_path_factory.mktemp("js")) as server:
        yield server


@pytest.fixture
def private_js_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    with jetstream_server(tmp_path / "js") as server:
        yield server


@pytest.fixture
def bucket() -> str:
    # One bucket per test: no test sees another's records.
    return f"t-{uuid.uuid4().hex[:12]}"


def settings_of(url: str, bucket: str, **more: Any) -> NatsDiscoverySettings:
    return load_settings(
        NatsDiscoverySettings,
        prefix=ENV_PREFIX,
        environ={},
        overrides={"url": url, "bucket": bucket, **more},
    )


@asynccontextmanager
async def discovery(url: str, bucket: str, **more: Any) -> AsyncIterator[NatsDiscovery]:
    async with anyio.create_task_group() as tg:
        backend = NatsDiscovery(settings_of(url, bucket, **more))
        backend.start(tg)
        try:
            yield backend
        finally:
            await backend.aclose()


def inst(name: str, instance_id: str, port: int = 1) -> Instance:
    return Instance(name, instance_id, "tcp", f"tcp://127.0.0.1:{port}/{name}")


async def next_event(watch: Watch) -> WatchEvent:
    return await watch.__anext__()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the conformance kit ------------------------------------------------------------------------


class TestNatsDiscoveryConformance(DiscoveryConformance):
    backend_name = "nats"

    @pytest.fixture
    def discovery_settings(self, request: pytest.FixtureRequest, bucket: str) -> dict[str, object]:
        # The restart case gets a server of its own; the others share one.
        wants_restart = "discovery_store_restart" in request.fixturenames
        server = request.getfixturevalue("private_js_server" if wants_restart else "js_server")
        return {"url": server.url, "bucket": bucket}

    @pytest.fixture
    def discovery_store_restart(self, private_js_server: NatsServerProcess) -> StoreRestart:
        async def restart() -> None:
            # Memory storage: the server comes back without the bucket or any record.
            await anyio.to_thread.run_sync(private_js_server.restart)

        return restart


# -- the plugin ---------------------------------------------------------------------------------


def test_the_backend_is_installed_through_its_entry_point() -> None:
    registry = load_plugins()
    loaded = registry.discovery_backend("nats")
    assert loaded.distribution == "requestplane-nats"
    assert loaded.spec.settings is NatsDiscoverySettings


def test_settings_are_read_from_their_variables() -> None:
    settings = load_settings(
        NatsDiscoverySettings,
        prefix=ENV_PREFIX,
        environ={f"{ENV_PREFIX}TTL": "2.5", f"{ENV_PREFIX}BUCKET": "disc"},
    )
    assert (settings.ttl, settings.ttl_seconds, settings.bucket) == (2.5, 3, "disc")
    assert settings.url == "nats://127.0.0.1:4222"
    with pytest.raises(ConfigError, match=f"{ENV_PREFIX}TTL"):
        load_settings(NatsDiscoverySettings, prefix=ENV_PREFIX, environ={f"{ENV_PREFIX}TTL": "0.5"})
    with pytest.raises(ConfigError, match=f"{ENV_PREFIX}BUCKET"):
        load_settings(
            NatsDiscoverySettings, prefix=ENV_PREFIX, environ={f"{ENV_PREFIX}BUCKET": "a.b"}
        )


# -- publish, list, watch ---------------------------------------------------------------------


async def test_register_list_watch_unregister(js_server: NatsServerProcess, bucket: str) -> None:
    url = js_server.url
    with anyio.fail_after(20):
        async with discovery(url, bucket) as owner, discovery(url, bucket) as finder:
            first, second = inst("llm/decode", "a1", 1), inst("llm/decode", "b2", 2)
            other = inst("llm", "c3", 3)  # a shorter name: its key must not match llm.decode.*
            await owner.register(first)
            await owner.register(other)
            assert await finder.list_instances("llm/decode") == [first]
            assert await finder.list_instances("llm") == [other]
            assert await finder.list_instances("nothing/here") == []
            async with finder.watch("llm/decode") as watch:
                assert await next_event(watch) == Snapshot((first,))
                await owner.register(second)
                assert await next_event(watch) == Added(second)
                await owner.unregister(first)
                assert await next_event(watch) == Removed(first)
                assert await finder.list_instances("llm/decode") == [second]
                got = (await finder.list_instances("llm/decode"))[0]
                assert got.address == second.address and got.transport == "tcp"
                await owner.unregister(other)  # another name: no event here
                await owner.aclose()  # withdraws what it still owns
                assert await next_event(watch) == Removed(second)
            assert await finder.list_instances("llm/decode") == []
            assert await finder.list_instances("llm") == []


async def test_a_watch_or_list_right_after_a_register_holds_it(
    js_server: NatsServerProcess, bucket: str
) -> None:
    # The backlog of a KV watch must end after its last record, not before it (nats-py's
    # KeyWatcher marker could come first: a Snapshot without the record, then an Added).
    url = js_server.url
    with anyio.fail_after(60):
        async with discovery(url, bucket) as owner, discovery(url, bucket) as finder:
            for n in range(40):
                record = inst(f"race{n}", "x")
                await owner.register(record)
                async with finder.watch(record.name) as watch:
                    assert await next_event(watch) == Snapshot((record,)), n
                assert await finder.list_instances(record.name) == [record], n


async def test_a_live_instance_id_is_refused_and_free_again_once_withdrawn(
    js_server: NatsServerProcess, bucket: str
) -> None:
    url = js_server.url
    with anyio.fail_after(20):
        async with discovery(url, bucket) as one, discovery(url, bucket) as two:
            record = inst("svc", "same")
            await one.register(record)
            with pytest.raises(ConfigError, match="already registered"):
                await one.register(record)
            with pytest.raises(ConfigError, match="already registered"):
                await two.register(record)
            await one.unregister(record)
            await two.register(record)  # over the unregister's tombstone
            assert await one.list_instances("svc") == [record]


async def test_records_are_kept_alive_past_their_ttl(
    js_server: NatsServerProcess, bucket: str
) -> None:
    with anyio.fail_after(20):
        async with discovery(js_server.url, bucket, ttl=1) as owner:
            record = inst("svc", "kept")
            await owner.register(record)
            async with owner.watch("svc") as watch:
                assert await next_event(watch) == Snapshot((record,))
                # Three TTLs without a Removed: the heartbeats kept it.
                with anyio.move_on_after(3):
                    event = await next_event(watch)
                    pytest.fail(f"unexpected {event}")
            assert await owner.list_instances("svc") == [record]


# -- expiry ----------------------------------------------------------------------------------


async def start_worker(url: str, bucket: str, name: str, ttl: float, *ids: str) -> Process:
    process = await anyio.open_process(
        [sys.executable, str(WORKER), url, bucket, name, str(ttl), *ids],
        stdout=-1,
        stderr=None,
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await process.stdout.receive(1)
        line += chunk
    assert line.split() == [b"ready", *(i.encode() for i in ids)]
    return process


async def test_a_sigkilled_worker_is_removed_after_its_ttl(
    js_server: NatsServerProcess, bucket: str
) -> None:
    ttl = 1.0
    with anyio.fail_after(30):
        async with discovery(js_server.url, bucket) as finder:
            async with finder.watch("work") as watch:
                assert await next_event(watch) == Snapshot(())
                process = await start_worker(js_server.url, bucket, "work", ttl, "w1", "w2")
                try:
                    added = {await next_event(watch), await next_event(watch)}
                    assert {type(e) for e in added} == {Added}
                    killed = time.monotonic()
                    process.send_signal(signal.SIGKILL)
                    with anyio.fail_after(ttl + 1.5):
                        removed = {await next_event(watch), await next_event(watch)}
                    elapsed = time.monotonic() - killed
                finally:
                    if process.returncode is None:
                        process.kill()
                    await process.aclose()
                assert {type(e) for e in removed} == {Removed}
                assert {e.instance.instance_id for e in removed} == {"w1", "w2"}  # type: ignore[union-attr]
                assert elapsed <= ttl + 1.0
            assert await finder.list_instances("work") == []
            # The id of an expired record may be used again.
            await finder.register(inst("work", "w1"))


# -- bad input and faults ------------------------------------------------------------------------


async def test_a_server_without_jetstream_is_a_config_error_naming_js(
    nats_server: NatsServerProcess, bucket: str
) -> None:
    with anyio.fail_after(20):
        async with discovery(nats_server.url, bucket) as backend:
            with pytest.raises(ConfigError, match="-js"):
                await backend.register(inst("svc", "x"))
            with pytest.raises(ConfigError, match="-js"):
                await backend.list_instances("svc")


async def test_a_bucket_not_made_for_discovery_is_refused(
    js_server: NatsServerProcess, bucket: str
) -> None:
    async def plain_bucket() -> None:
        # Made by someone else, without expiry markers: records would vanish unseen.
        nc = await nats.connect(js_server.url)
        try:
            await nc.jetstream().create_key_value(bucket=bucket, history=1)
        finally:
            await nc.close()

    await anyio.to_thread.run_sync(asyncio.run, plain_bucket())
    with anyio.fail_after(20):
        async with discovery(js_server.url, bucket) as backend:
            with pytest.raises(ConfigError, match=f"{ENV_PREFIX}BUCKET"):
                await backend.register(inst("svc", "x"))


async def test_credentials_are_used_and_a_refusal_names_them(tmp_path: Path, bucket: str) -> None:
    config = f'authorization {{ token: "s3cret" }}\njetstream {{ store_dir: "{tmp_path}" }}\n'
    with NatsServerProcess(config=config) as server, anyio.fail_after(20):
        async with discovery(server.url, bucket, token="wrong") as refused:
            with pytest.raises(ConfigError, match=f"{ENV_PREFIX}TOKEN"):
                await refused.register(inst("svc", "x"))
        async with discovery(server.url, bucket, token="s3cret") as allowed:
            await allowed.register(inst("svc", "x"))
            assert await allowed.list_instances("svc") == [inst("svc", "x")]


async def test_tls_is_verified_and_never_dropped(
    tmp_path: Path, js_server: NatsServerProcess, bucket: str
) -> None:
    ca = trustme.CA()
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(ca_file)
    issued = ca.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    config = (
        f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    with NatsServerProcess(config=config) as server, anyio.fail_after(30):
        async with discovery(server.url, bucket, tls_ca=str(ca_file)) as trusted:
            await trusted.register(inst("svc", "x"))
            assert await trusted.list_instances("svc") == [inst("svc", "x")]
        async with discovery(server.url, bucket, tls_ca=str(other_ca)) as untrusted:
            with pytest.raises(ProtocolError, match=f"{ENV_PREFIX}TLS_CA"):
                await untrusted.list_instances("svc")
        # TLS asked for, a plain server found: refused rather than sent in the clear.
        async with discovery(js_server.url, bucket, tls_ca=str(ca_file)) as plain:
            with pytest.raises(ProtocolError, match="in the clear"):
                await plain.list_instances("svc")


async def test_an_unreachable_store_is_unavailable_saying_what_to_check(bucket: str) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with anyio.fail_after(20):
        async with discovery(url, bucket, connect_timeout=1) as backend:
            with pytest.raises(Unavailable) as info:
                await backend.register(inst("svc", "x"))
            message = str(info.value)
            assert f"{ENV_PREFIX}URL" in message and "-js" in message and url in message
            with pytest.raises(Unavailable):
                await backend.list_instances("svc")


async def test_a_watch_started_before_the_store_follows_once_it_is_up(
    tmp_path: Path, bucket: str
) -> None:
    server = jetstream_server(tmp_path / "js")
    server.port = free_port()
    url = f"nats://127.0.0.1:{server.port}"
    try:
        with anyio.fail_after(30):
            async with discovery(url, bucket) as finder, discovery(url, bucket) as owner:
                async with finder.watch("svc") as watch:
                    await anyio.to_thread.run_sync(server.start)
                    assert await next_event(watch) == Snapshot(())
                    record = inst("svc", "late")
                    await owner.register(record)
                    assert await next_event(watch) == Added(record)
    finally:
        server.close()


@pytest.mark.parametrize("storage", ["memory", "file"])
async def test_store_restart_records_come_back_and_watchers_miss_nothing(
    private_js_server: NatsServerProcess, bucket: str, storage: str
) -> None:
    # memory: the store comes back empty, without the bucket; file: with both, and the dead
    # owner's record then expires after its TTL.
    server = private_js_server
    url = server.url
    more = {"storage": storage, "ttl": 2}
    events: list[WatchEvent] = []
    live: dict[str, Instance] = {}
    changed = anyio.Event()

    def apply(event: WatchEvent) -> None:
        nonlocal changed
        events.append(event)
        if isinstance(event, Snapshot):
            live.update({i.instance_id: i for i in event.instances})
        elif isinstance(event, Added):
            # A repeated Added (without a Removed in between) would be a duplicate.
            assert event.instance.instance_id not in live, f"duplicate {event}"
            live[event.instance.instance_id] = event.instance
        else:
            assert live.pop(event.instance.instance_id, None) is not None, f"stray {event}"
        changed.set()
        changed = anyio.Event()

    async def until(condition: Any) -> None:
        while not condition():
            await changed.wait()

    stays, leaves = inst("svc", "stays", 1), inst("svc", "leaves", 2)
    with anyio.fail_after(60):
        async with (
            discovery(url, bucket, **more) as owner,
            discovery(url, bucket, **more) as doomed,
            discovery(url, bucket, **more) as finder,
        ):
            await owner.register(stays)
            await doomed.register(leaves)
            async with finder.watch("svc") as watch, anyio.create_task_group() as tg:

                async def follow() -> None:
                    async for event in watch:
                        apply(event)

                tg.start_soon(follow)
                await until(lambda: set(live) == {"stays", "leaves"})
                # The store goes away; 'leaves' closes meanwhile (its unregister cannot reach
                # the store).
                await anyio.to_thread.run_sync(server.stop)
                await doomed.aclose()
                await anyio.to_thread.run_sync(server.start)
                # The owner re-asserts 'stays'; 'leaves' is gone: the watch must say so.
                await until(lambda: set(live) == {"stays"})
                assert await finder.list_instances("svc") == [stays]
                # And it keeps following after the restart.
                late = inst("svc", "late", 3)
                await owner.register(late)
                await until(lambda: set(live) == {"stays", "late"})
                await owner.unregister(stays)
                await until(lambda: set(live) == {"late"})
                tg.cancel_scope.cancel()
    assert isinstance(events[0], Snapshot)
    assert Removed(leaves) in events


# -- the common production pairing ------------------------------------------------------------


async def test_tcp_transport_with_nats_discovery_end_to_end(
    js_server: NatsServerProcess, bucket: str
) -> None:
    found = {"url": js_server.url, "bucket": bucket}

    async def hello(request: Request) -> bytes:
        return b"hello " + request.payload

    with anyio.fail_after(30):
        async with RequestPlane(
            "tcp", settings={"port": 0}, discovery="nats", discovery_settings=found
        ) as serving:
            server = await serving.server()
            await server.register("greet/hello", hello)
            async with RequestPlane("tcp", discovery="nats", discovery_settings=found) as calling:
                instances = await calling.discovery().list_instances("greet/hello")
                assert [i.instance_id for i in instances] == [server.instance_id]
                assert instances[0].transport == "tcp"
                client = calling.client()
                reply = await client.request(Address.parse(instances[0].address), b"you")
                assert reply == b"hello you"
                async with calling.discovery().watch("greet/hello") as watch:
                    snapshot = await next_event(watch)
                    assert isinstance(snapshot, Snapshot) and snapshot.instances == tuple(instances)
                    await server.unregister("greet/hello")
                    assert await next_event(watch) == Removed(instances[0])


async def test_nats_transport_publishes_its_per_instance_subject(
    js_server: NatsServerProcess, bucket: str
) -> None:
    # One nats-server -js as both the transport's broker and the discovery store.
    found = {"url": js_server.url, "bucket": bucket}
    transport = {"url": js_server.url}

    async def whoami(request: Request) -> bytes:
        return b"me"

    with anyio.fail_after(30):
        async with RequestPlane(
            "nats", settings=transport, discovery="nats", discovery_settings=found
        ) as serving:
            server = await serving.server()
            shared = await server.register("who/ami", whoami)
            async with RequestPlane(
                "nats", settings=transport, discovery="nats", discovery_settings=found
            ) as calling:
                [instance] = await calling.discovery().list_instances("who/ami")
                assert instance.transport == "nats"
                assert instance.instance_id == server.instance_id
                # The published address reaches this server alone, not the queue group.
                assert instance.address != str(shared)
                reply = await calling.client().request(Address.parse(instance.address), b"")
                assert reply == b"me"


def test_keys_put_each_name_under_its_own_wildcard() -> None:
    assert key_of("llm/decode/generate", "ab") == "llm.decode.generate.ab"
