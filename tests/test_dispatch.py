"""The dispatcher's rules, which every transport inherits: one outcome per request."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
import pytest

from requestplane_core import (
    ConnectionLost,
    DeadlineExceeded,
    Dispatcher,
    EndpointNotFound,
    Overloaded,
    PayloadTooLarge,
    Pending,
    RemoteError,
    Request,
    RequestPlaneError,
    Unavailable,
)
from requestplane_core.dispatch import is_synchronous

pytestmark = pytest.mark.anyio


class Recorder:
    """A responder that records what the dispatcher sent (the transport's side of it)."""

    def __init__(self, limit: int | None = None, gone: bool = False) -> None:
        self.events: list[tuple[str, object]] = []
        self.limit = limit
        self.gone = gone

    def _check(self, payload: bytes) -> None:
        if self.gone:
            raise ConnectionLost("caller went away")
        if self.limit is not None and len(payload) > self.limit:
            raise PayloadTooLarge(f"{len(payload)} > {self.limit}")

    async def send_response(self, payload: bytes) -> None:
        self._check(payload)
        self.events.append(("response", payload))

    async def send_chunk(self, payload: bytes) -> None:
        self._check(payload)
        self.events.append(("chunk", payload))

    async def send_end(self) -> None:
        self.events.append(("end", None))

    async def send_error(self, error: RequestPlaneError) -> None:
        if self.gone:
            raise ConnectionLost("caller went away")
        self.events.append(("error", error))

    def terminal(self) -> list[tuple[str, object]]:
        return [e for e in self.events if e[0] != "chunk"]


async def echo(request: Request) -> bytes:
    return request.payload


async def gen(request: Request) -> AsyncIterator[bytes]:
    yield b"a"
    yield b"b"


async def returns_iterator(request: Request) -> AsyncIterator[bytes]:
    return gen(request)


async def boom(request: Request) -> bytes:
    raise ZeroDivisionError("nope")


def req(endpoint: str, payload: bytes = b"x", deadline: float | None = None) -> Request:
    return Request(endpoint, payload, {}, deadline)


async def test_unary() -> None:
    d, r = Dispatcher(), Recorder()
    d.register("echo", echo)
    await d.handle(req("echo", b"hi"), r)
    assert r.events == [("response", b"hi")]


@pytest.mark.parametrize("handler", [gen, returns_iterator])
async def test_async_generator_and_returned_iterator_both_stream(handler: object) -> None:
    d, r = Dispatcher(), Recorder()
    d.register("s", handler)  # type: ignore[arg-type]
    await d.handle(req("s"), r)
    assert r.events == [("chunk", b"a"), ("chunk", b"b"), ("end", None)]


async def test_unknown_endpoint() -> None:
    r = Recorder()
    await Dispatcher().handle(req("nope"), r)
    [(kind, error)] = r.events
    assert kind == "error" and isinstance(error, EndpointNotFound)


async def test_handler_error_becomes_remote_error() -> None:
    d, r = Dispatcher(), Recorder()
    d.register("boom", boom)
    await d.handle(req("boom"), r)
    [(_, error)] = r.events
    assert isinstance(error, RemoteError)
    assert (error.type_name, error.remote_message) == ("ZeroDivisionError", "nope")


async def test_oversize_response_becomes_payload_too_large() -> None:
    d, r = Dispatcher(), Recorder(limit=1)
    d.register("echo", echo)
    await d.handle(req("echo", b"too long"), r)
    [(_, error)] = r.events
    assert isinstance(error, PayloadTooLarge)


async def test_gone_caller_gets_nothing_and_nothing_raises() -> None:
    d, r = Dispatcher(), Recorder(gone=True)
    d.register("echo", echo)
    await d.handle(req("echo"), r)
    assert r.events == [] and d.inflight == 0


async def test_deadline_cancels_handler_and_reports_deadline_exceeded() -> None:
    d, r = Dispatcher(), Recorder()
    cancelled = anyio.Event()

    async def slow(request: Request) -> bytes:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    d.register("slow", slow)
    with anyio.fail_after(5):
        await d.handle(req("slow", deadline=anyio.current_time() + 0.05), r)
    assert cancelled.is_set()
    [(_, error)] = r.events
    assert isinstance(error, DeadlineExceeded)


async def test_admission_sheds_at_the_limit() -> None:
    d = Dispatcher(max_inflight=2)
    release, running = anyio.Event(), []

    async def hold(request: Request) -> bytes:
        running.append(1)
        await release.wait()
        return b"done"

    d.register("hold", hold)
    recorders = [Recorder() for _ in range(3)]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.handle, req("hold"), recorders[0])
            tg.start_soon(d.handle, req("hold"), recorders[1])
            await anyio.wait_all_tasks_blocked()
            await d.handle(req("hold"), recorders[2])
            release.set()
    assert recorders[0].events == recorders[1].events == [("response", b"done")]
    [(_, error)] = recorders[2].events
    assert isinstance(error, Overloaded) and error.retriable


async def test_caller_cancel_sends_nothing() -> None:
    d, r = Dispatcher(), Recorder()
    started = anyio.Event()

    async def hang(request: Request) -> bytes:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    d.register("hang", hang)
    scope = anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.handle, req("hang"), r, scope)
            await started.wait()
            scope.cancel()
    assert r.events == [] and d.inflight == 0


async def test_drain_waits_then_cancels_stragglers_with_unavailable() -> None:
    d = Dispatcher()
    quick_release = anyio.Event()

    async def quick(request: Request) -> bytes:
        await quick_release.wait()
        return b"finished"

    async def stuck(request: Request) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    d.register("quick", quick)
    d.register("stuck", stuck)
    rq, rs, late = Recorder(), Recorder(), Recorder()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.handle, req("quick"), rq)
            tg.start_soon(d.handle, req("stuck"), rs)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(d.drain, 0.2)
            await anyio.wait_all_tasks_blocked()
            await d.handle(req("quick"), late)
            quick_release.set()
    assert rq.events == [("response", b"finished")]
    [(_, error)] = rs.events
    assert isinstance(error, Unavailable)
    [(_, error)] = late.events
    assert isinstance(error, Unavailable)


async def test_register_rules() -> None:
    d = Dispatcher()
    d.register("a", echo)
    with pytest.raises(ValueError, match="already registered"):
        d.register("a", echo)
    for bad in ("", "a//b", "/a", "a/", " padded ", "a b"):
        with pytest.raises(ValueError, match="not valid"):
            d.register(bad, echo)
    with pytest.raises(EndpointNotFound):
        await d.unregister("missing", 1)


async def test_unregister_cancels_stragglers_and_their_callers_get_unavailable() -> None:
    d, r = Dispatcher(), Recorder()

    async def stuck(request: Request) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    d.register("stuck", stuck)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.handle, req("stuck"), r)
            await anyio.wait_all_tasks_blocked()
            await d.unregister("stuck", 0.1)
    [(_, error)] = r.events
    assert isinstance(error, Unavailable)
    assert d.endpoints == [] and d.inflight == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_handler_raising_cancelled_error_itself_is_a_remote_error() -> None:
    import asyncio

    d, r = Dispatcher(), Recorder()

    async def awaits_a_cancelled_future(request: Request) -> bytes:
        raise asyncio.CancelledError()

    d.register("h", awaits_a_cancelled_future)
    await d.handle(req("h"), r)
    [(_, error)] = r.events
    assert isinstance(error, RemoteError) and error.type_name == "CancelledError"


async def test_an_already_expired_request_never_starts_its_handler() -> None:
    d, r, ran = Dispatcher(), Recorder(), []

    async def handler(request: Request) -> bytes:
        ran.append(1)
        return b""

    d.register("h", handler)
    await d.handle(req("h", deadline=anyio.current_time() - 1), r)
    [(_, error)] = r.events
    assert isinstance(error, DeadlineExceeded) and ran == []


# -- synchronous handlers and answer_now ---------------------------------------------------


def sync_echo(request: Request) -> bytes:
    return b"sync:" + request.payload


class AsyncCallable:
    async def __call__(self, request: Request) -> bytes:
        return request.payload


class SyncCallable:
    def __call__(self, request: Request) -> bytes:
        return request.payload


def test_which_handlers_are_synchronous() -> None:
    import functools

    assert is_synchronous(sync_echo)
    assert is_synchronous(SyncCallable())
    assert is_synchronous(lambda request: echo(request))  # a guess; still served right
    assert not is_synchronous(echo)
    assert not is_synchronous(gen)
    assert not is_synchronous(functools.partial(echo))
    assert not is_synchronous(AsyncCallable())


async def test_answer_now_runs_a_synchronous_handler_on_the_spot() -> None:
    d = Dispatcher()
    d.register("sync", sync_echo)
    d.register("bytearray", lambda request: bytearray(b"ba"))  # type: ignore[arg-type,return-value]
    assert d.answer_now(req("sync", b"hi")) == b"sync:hi"
    assert d.answer_now(req("bytearray")) == b"ba"
    assert type(d.answer_now(req("bytearray"))) is bytes
    assert d.inflight == 0


async def test_answer_now_refuses_at_once() -> None:
    d = Dispatcher(max_inflight=1)
    d.register("sync", sync_echo)
    assert isinstance(d.answer_now(req("nope")), EndpointNotFound)
    expired = d.answer_now(req("sync", deadline=anyio.current_time() - 1))
    assert isinstance(expired, DeadlineExceeded)
    release = anyio.Event()

    async def hold(request: Request) -> bytes:
        await release.wait()
        return b"done"

    d.register("hold", hold)
    r = Recorder()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(d.handle, req("hold"), r)
            await anyio.wait_all_tasks_blocked()
            overloaded = d.answer_now(req("sync"))
            assert isinstance(overloaded, Overloaded) and overloaded.retriable
            release.set()
    assert r.events == [("response", b"done")]
    with anyio.fail_after(5):
        await d.drain(1.0)
    assert isinstance(d.answer_now(req("sync")), Unavailable)


async def test_answer_now_maps_a_synchronous_handler_error() -> None:
    def broken(request: Request) -> bytes:
        raise KeyError("missing")

    d = Dispatcher()
    d.register("broken", broken)
    error = d.answer_now(req("broken"))
    assert isinstance(error, RemoteError) and error.type_name == "KeyError"


async def test_async_endpoints_are_pending_and_never_called_early() -> None:
    calls: list[Request] = []

    async def counted(request: Request) -> bytes:
        calls.append(request)
        return b"later"

    d, r = Dispatcher(), Recorder()
    d.register("async", counted)
    pending = d.answer_now(req("async"))
    assert isinstance(pending, Pending) and calls == []
    await d.handle(req("async"), r, pending=pending)
    assert r.events == [("response", b"later")] and len(calls) == 1


@pytest.mark.parametrize("kind", ["coroutine", "iterator"])
async def test_a_plain_function_returning_async_work_is_called_once(kind: str) -> None:
    calls: list[Request] = []

    def wrapper(request: Request) -> object:
        calls.append(request)
        return echo(request) if kind == "coroutine" else gen(request)

    d, r = Dispatcher(), Recorder()
    d.register("wrapped", wrapper)  # type: ignore[arg-type]
    request = req("wrapped", b"w")
    pending = d.answer_now(request)
    assert isinstance(pending, Pending) and len(calls) == 1
    await d.handle(request, r, pending=pending)
    expected = (
        [("response", b"w")]
        if kind == "coroutine"
        else [("chunk", b"a"), ("chunk", b"b"), ("end", None)]
    )
    assert r.events == expected and len(calls) == 1


async def test_handle_alone_serves_synchronous_handlers_too() -> None:
    d, r, e = Dispatcher(), Recorder(), Recorder()
    d.register("sync", sync_echo)
    d.register("wrapped", lambda request: echo(request))
    await d.handle(req("sync", b"x"), r)
    await d.handle(req("wrapped", b"y"), e)
    assert r.events == [("response", b"sync:x")] and e.events == [("response", b"y")]


async def test_pending_work_for_an_endpoint_gone_meanwhile_is_refused_and_closed() -> None:
    made: list[Coroutine[Any, Any, bytes]] = []

    def wrapper(request: Request) -> Coroutine[Any, Any, bytes]:
        made.append(echo(request))
        return made[-1]

    d, r = Dispatcher(), Recorder()
    d.register("wrapped", wrapper)
    pending = d.answer_now(req("wrapped"))
    assert isinstance(pending, Pending)
    await d.unregister("wrapped", 1.0)
    await d.handle(req("wrapped"), r, pending=pending)
    [(_, error)] = r.events
    assert isinstance(error, EndpointNotFound)
    # closed, not left to warn "coroutine was never awaited" when collected
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
