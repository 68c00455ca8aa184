"""Probe: nats-py request/reply on trio via trio-asyncio vs. an asyncio loop in a thread.

Measures the mechanism only (64 concurrent 1 KiB echo, responder and callers both on the trio
side), to choose the bridge before building the transport on it. Usage:
    python benchmarks/nats_trio_bridge_probe.py nats://127.0.0.1:PORT SECONDS MODE

MODE: raw, trio-asyncio or thread (one per process).
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time

import nats
import trio

URL = sys.argv[1]
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
CONC = 64
PAYLOAD = b"x" * 1024


async def drive(call) -> float:  # type: ignore[no-untyped-def]
    done = 0
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for _ in range(CONC):
            n.start_soon(worker)
    return done / (time.perf_counter() - t0)


def raw_asyncio() -> float:
    async def main() -> float:
        nc = await nats.connect(URL)

        async def cb(msg):  # type: ignore[no-untyped-def]
            await nc.publish(msg.reply, msg.data)

        await nc.subscribe("probe.raw", cb=cb)
        done = 0
        stop = time.perf_counter() + SECONDS

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await nc.request("probe.raw", PAYLOAD, timeout=10)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONC)))
        rate = done / (time.perf_counter() - t0)
        await nc.close()
        return rate

    return asyncio.run(main())


def trio_asyncio_bridge() -> float:
    import trio_asyncio

    async def main() -> float:
        async with trio_asyncio.open_loop():
            nc = await trio_asyncio.aio_as_trio(nats.connect)(URL)
            send, recv = trio.open_memory_channel[object](float("inf"))

            async def cb(msg):  # type: ignore[no-untyped-def]
                send.send_nowait(msg)  # hand to the trio side: the handler runs in trio

            async def responder(msg):  # type: ignore[no-untyped-def]
                await trio_asyncio.aio_as_trio(nc.publish)(msg.reply, msg.data)

            async def pump(nursery):  # type: ignore[no-untyped-def]
                async for msg in recv:
                    nursery.start_soon(responder, msg)

            await trio_asyncio.aio_as_trio(nc.subscribe)("probe.ta", cb=cb)
            req = trio_asyncio.aio_as_trio(nc.request)
            async with trio.open_nursery() as n:
                n.start_soon(pump, n)
                rate = await drive(lambda: req("probe.ta", PAYLOAD, timeout=10))
                n.cancel_scope.cancel()
            await trio_asyncio.aio_as_trio(nc.close)()
            return rate

    return trio.run(main)


class ThreadBridge:
    """asyncio loop in a thread; batched hand-offs both ways."""

    def __init__(self) -> None:
        self.loop = asyncio.SelectorEventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.token = trio.lowlevel.current_trio_token()
        self.inbound: collections.deque = collections.deque()  # type: ignore[type-arg]
        self.in_scheduled = False
        self.outbound: collections.deque = collections.deque()  # type: ignore[type-arg]
        self.out_scheduled = False
        self.out_event: asyncio.Event | None = None

    # nats loop -> trio
    def to_trio(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
        self.inbound.append((fn, args))
        if not self.in_scheduled:
            self.in_scheduled = True
            self.token.run_sync_soon(self._drain_in)

    def _drain_in(self) -> None:
        self.in_scheduled = False
        q = self.inbound
        while q:
            fn, args = q.popleft()
            fn(*args)

    # trio -> nats loop (ordered, fire and forget)
    def submit(self, afn, *args) -> None:  # type: ignore[no-untyped-def]
        self.outbound.append((afn, args))
        if not self.out_scheduled:
            self.out_scheduled = True
            self.loop.call_soon_threadsafe(self._wake_out)

    def _wake_out(self) -> None:
        assert self.out_event is not None
        self.out_event.set()

    async def out_pump(self) -> None:
        self.out_event = asyncio.Event()
        q = self.outbound
        while True:
            await self.out_event.wait()
            self.out_event.clear()
            self.out_scheduled = False
            while q:
                afn, args = q.popleft()
                await afn(*args)

    async def run(self, coro):  # type: ignore[no-untyped-def]
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        ev = trio.Event()
        fut.add_done_callback(lambda f: self.token.run_sync_soon(ev.set))
        await ev.wait()
        return fut.result()


def thread_bridge() -> float:
    async def main() -> float:
        b = ThreadBridge()
        nc = await b.run(nats.connect(URL))
        asyncio.run_coroutine_threadsafe(b.out_pump(), b.loop)
        inbox_prefix = nc.new_inbox()
        pending: dict[str, list[object]] = {}

        def deliver(msg) -> None:  # type: ignore[no-untyped-def]
            slot = pending.pop(msg.subject, None)
            if slot is not None:
                slot.append(msg)
                ev = slot[0]
                ev.set()  # type: ignore[attr-defined]

        async def inbox_cb(msg):  # type: ignore[no-untyped-def]
            b.to_trio(deliver, msg)

        await b.run(nc.subscribe(inbox_prefix + ".*", cb=inbox_cb))
        async with trio.open_nursery() as n:

            async def responder(msg):  # type: ignore[no-untyped-def]
                b.submit(nc.publish, msg.reply, msg.data)

            async def req_cb(msg):  # type: ignore[no-untyped-def]
                b.to_trio(n.start_soon, responder, msg)

            await b.run(nc.subscribe("probe.th", cb=req_cb))
            counter = 0

            async def call() -> None:
                nonlocal counter
                counter += 1
                subj = f"{inbox_prefix}.{counter}"
                ev = trio.Event()
                slot: list[object] = [ev]
                pending[subj] = slot
                b.submit(nc.publish, "probe.th", PAYLOAD, subj)
                await ev.wait()

            rate = await drive(call)
        await b.run(nc.close())
        b.loop.call_soon_threadsafe(b.loop.stop)
        b.thread.join()
        return rate

    return trio.run(main)


if __name__ == "__main__":
    # One mode per process: importing trio_asyncio patches asyncio process-wide.
    name = sys.argv[3]
    fn = {"raw": raw_asyncio, "trio-asyncio": trio_asyncio_bridge, "thread": thread_bridge}[name]
    print(f"{name:14s} {fn():8.0f} req/s", flush=True)
