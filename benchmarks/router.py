"""The router across a fleet of real worker processes: what it costs and how it behaves.

Every experiment starts its own tcp workers (``_fleet.py``), each its own instance in a
file-discovery directory of the experiment's own; this process is the one client. It prints:

- cost: the CPU a routed call adds over calling a client directly, measured over a client
  that answers at once (round_robin, p2c; 3 instances);
- overhead: CPU per request (client + servers) of ``plane.router()`` (round_robin, p2c)
  against the plain client cycling over the same three addresses itself, 1 KiB, 64 in
  flight, the variants interleaved in the same run, against the same worker processes;
- spread: requests per worker under round_robin in those phases (max/min);
- slow worker: p2c and round_robin over three workers, one 5x slower (its echo sleeps 5x
  as long), and that worker's share of the requests;
- failover: 64 in flight for 10 s, one of three workers SIGKILLed after 3 s: every call's
  one outcome by type, which calls failed (in flight on the killed worker?), how soon the
  router stopped choosing it after the first refused connect, when discovery dropped it;
- rolling restart: every worker SIGTERMed in turn (it withdraws, then drains) and replaced,
  under the same load: the calls that failed (none expected);
- hash: the share of 10,000 keys that move to another worker when a fourth joins.

    flock /tmp/requestplane-bench.lock python benchmarks/router.py --backend asyncio|trio
        [--only overhead,slow,failover,rolling,hash] [--json]

Observing plugins (otel) are disabled unless REQUESTPLANE_DISABLE_PLUGINS is set: the router
is measured, not the tracing.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from _fleet import Fleet, fleet, listed
from requestplane_bench.cpu import CpuMeter
from requestplane_bench.fleet import SpreadMeter, spread
from requestplane_bench.load import Call, LoadPlan, run_load

from requestplane_core import RequestPlane
from requestplane_core.address import Address
from requestplane_core.plugin_api import PluginRegistry, RequestEvent, hookimpl, load_plugins
from requestplane_core.router import Router

EXPERIMENTS = ("cost", "overhead", "slow", "failover", "rolling", "hash")
PAYLOAD = os.urandom(1024)
CONCURRENCY = 64

Result = dict[str, Any]


# -- what every experiment shares ---------------------------------------------------------


@contextmanager
def discovery_env() -> Iterator[dict[str, str]]:
    """The environment of one experiment's workers and client: its own discovery directory."""
    with tempfile.TemporaryDirectory(prefix="rp-router-") as directory:
        env = dict(os.environ)
        env.update(REQUESTPLANE_DISCOVERY="file", REQUESTPLANE_DISCOVERY_FILE_DIR=directory)
        env.setdefault("REQUESTPLANE_DISABLE_PLUGINS", "otel")
        yield env


class AttemptLog:
    """Every attempt the client makes (a routed call's failovers are attempts of their own):
    when, on which instance, and how it ended."""

    def __init__(self) -> None:
        self.attempts: list[tuple[float, float, str | None, str]] = []

    @hookimpl
    def requestplane_request_finished(self, event: RequestEvent) -> None:
        if event.side == "client":
            end = event.started + (event.duration or 0.0)
            self.attempts.append((event.started, end, event.instance, event.outcome))


def client_plane(env: dict[str, str], log: AttemptLog | None = None) -> RequestPlane:
    registry: PluginRegistry = load_plugins(only="tcp", deny=env["REQUESTPLANE_DISABLE_PLUGINS"])
    if log is not None:
        registry.manager.register(log)
    return RequestPlane("tcp", environ=env, plugins=registry)


class Outcomes:
    """Calls kept ``concurrency`` in flight until stopped; each call's one outcome counted."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.started = 0
        self.failed: list[tuple[float, str]] = []  # (when it started, error) per failed call

    async def drive(
        self, call: Callable[[], Awaitable[object]], stop: anyio.Event, concurrency: int
    ) -> None:
        async def caller() -> None:
            while not stop.is_set():
                self.started += 1
                began = time.perf_counter()
                try:
                    await call()
                except Exception as exc:
                    self.counts[type(exc).__name__] += 1
                    self.failed.append((began, type(exc).__name__))
                else:
                    self.counts["ok"] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(caller)

    @property
    def accounted(self) -> bool:
        return sum(self.counts.values()) == self.started


async def start_workers(f: Fleet, delays: list[float]) -> set[str]:
    return {(await f.start(delay)).instance for delay in delays}


# -- overhead and round-robin spread ------------------------------------------------------


async def overhead(backend: str, rounds: int, seconds: float) -> Result:
    with discovery_env() as env:
        async with fleet(env, backend) as f, client_plane(env) as plane:
            ids = await start_workers(f, [0.0, 0.0, 0.0])
            pids = [w.pid for w in f.workers]
            client = plane.client()
            addresses = itertools.cycle([Address.parse(w.echo) for w in f.workers])

            async def direct() -> None:
                await client.request(next(addresses), PAYLOAD)

            routers = {route: plane.router("echo", route=route) for route in ("round_robin", "p2c")}
            for router in routers.values():
                await listed(router, ids)
            calls: dict[str, Call] = {"direct": direct}
            for route, router in routers.items():

                async def routed(send: Any = router.request) -> None:
                    await send(PAYLOAD)

                calls[route] = routed
            cpu: dict[str, list[float]] = collections.defaultdict(list)
            client_cpu: dict[str, list[float]] = collections.defaultdict(list)
            rate: dict[str, list[float]] = collections.defaultdict(list)
            rr_requests: collections.Counter[str] = collections.Counter()
            for _ in range(rounds):
                for name, call in calls.items():
                    meter = CpuMeter(pids)
                    spread_meter = SpreadMeter(routers.get(name, routers["p2c"]), meter)
                    plan = LoadPlan(concurrency=CONCURRENCY, duration=seconds, warmup=0.3)
                    outcome = await run_load(call, plan, boundary=spread_meter)
                    if outcome.errors or outcome.lost:
                        raise RuntimeError(f"{name}: {outcome.error_samples}")
                    mine, servers = meter.per_request_us(outcome.completed)
                    assert mine is not None and servers is not None
                    cpu[name].append(mine + servers)
                    client_cpu[name].append(mine)
                    rate[name].append(outcome.completed / outcome.seconds)
                    if name == "round_robin":
                        rr_requests.update(spread_meter.requests)
    median = {name: statistics.median(values) for name, values in cpu.items()}
    # Each round's router phases ran right after its direct phase: their ratio drifts less
    # with the machine's load than the medians do.
    paired = {
        route: round(
            statistics.median(r / d for r, d in zip(cpu[route], cpu["direct"], strict=True)), 3
        )
        for route in ("round_robin", "p2c")
    }
    return {
        "router_vs_direct_paired": paired,
        "cpu_us_per_request": {k: round(v, 1) for k, v in median.items()},
        "client_cpu_us_per_request": {
            k: round(statistics.median(v), 1) for k, v in client_cpu.items()
        },
        "req_per_s": {k: round(statistics.median(v)) for k, v in rate.items()},
        "router_vs_direct": {
            route: round(median[route] / median["direct"], 3) for route in ("round_robin", "p2c")
        },
        "rounds": rounds,
        "seconds_per_phase": seconds,
        "round_robin_requests": sorted(rr_requests.values()),
        "round_robin_max_min": spread(rr_requests),
    }


# -- the router's own cost ----------------------------------------------------------------


class _Answering:
    """A client that answers at once: under it, a call's CPU is the router's alone."""

    async def request(
        self, address: Address, payload: bytes, *, headers: Any = None, timeout: Any = None
    ) -> bytes:
        return payload


async def router_cost(calls: int) -> Result:
    """CPU microseconds a routed call adds to calling a client: the pick, the bookkeeping,
    one more coroutine (best of 5 runs of ``calls`` calls, in this process)."""
    instances = " ".join(f"echo=tcp://127.0.0.1:{port}/echo" for port in (1, 2, 3))
    env = {"REQUESTPLANE_DISCOVERY": "static", "REQUESTPLANE_DISCOVERY_STATIC_INSTANCES": instances}
    answering = _Answering()
    result: Result = {}
    async with RequestPlane("tcp", environ=env) as plane, anyio.create_task_group() as tg:
        address = Address.parse("tcp://127.0.0.1:1/echo")
        for route in ("round_robin", "p2c"):
            router = Router("echo", plane.discovery(), lambda _: answering, tg, route=route)  # type: ignore[arg-type, return-value]
            await router.wait_for(3)
            best = {"client": float("inf"), "router": float("inf")}
            for _ in range(5):
                for name in best:
                    started = time.process_time()
                    if name == "client":
                        for _ in range(calls):
                            await answering.request(address, PAYLOAD)
                    else:
                        for _ in range(calls):
                            await router.request(PAYLOAD)
                    used = (time.process_time() - started) * 1e6 / calls
                    best[name] = min(best[name], used)
            result[f"{route}_us_per_call"] = round(best["router"] - best["client"], 2)
            await router.aclose()
        tg.cancel_scope.cancel()
    return result


# -- one slow worker ----------------------------------------------------------------------


async def slow_worker(backend: str, seconds: float, base: float) -> Result:
    result: Result = {"delays_s": [base, base, 5 * base]}
    with discovery_env() as env:
        async with fleet(env, backend) as f, client_plane(env) as plane:
            ids = await start_workers(f, [base, base, 5 * base])
            slow = f.workers[2].instance
            for route in ("p2c", "round_robin"):
                router = plane.router("echo", route=route)
                await listed(router, ids)

                async def call(send: Any = router.request) -> None:
                    await send(PAYLOAD)

                meter = SpreadMeter(router, lambda edge: None)
                plan = LoadPlan(concurrency=CONCURRENCY, duration=seconds, warmup=0.3)
                outcome = await run_load(call, plan, boundary=meter)
                counts = meter.requests
                stats = {s.instance: s for s in router.stats()}
                fast_latency = statistics.mean(
                    stats[i].mean_latency for i in ids if i != slow and stats[i].mean_latency
                )
                result[route] = {
                    "slow_share": round(counts[slow] / max(sum(counts.values()), 1), 4),
                    "requests": {("slow" if i == slow else i[:6]): n for i, n in counts.items()},
                    "slow_latency_vs_fast": round(stats[slow].mean_latency / fast_latency, 2),
                    "errors": outcome.errors + outcome.lost,
                }
    return result


# -- failover after a SIGKILL -------------------------------------------------------------


async def failover(backend: str, seconds: float, kill_after: float) -> Result:
    log = AttemptLog()
    with discovery_env() as env:
        async with fleet(env, backend) as f, client_plane(env, log) as plane:
            ids = await start_workers(f, [0.0, 0.0, 0.0])
            victim = f.workers[0]
            router = plane.router("echo", route="p2c")
            await listed(router, ids)
            outcomes = Outcomes()
            stop = anyio.Event()
            killed_at = dropped_at = 0.0

            async def call() -> None:
                await router.request(PAYLOAD, timeout=5.0)

            async def chaos() -> None:
                nonlocal killed_at, dropped_at
                await anyio.sleep(kill_after)
                killed_at = time.perf_counter()
                victim.kill()
                await listed(router, ids - {victim.instance})
                dropped_at = time.perf_counter()
                await anyio.sleep(max(0.0, seconds - kill_after - (dropped_at - killed_at)))
                stop.set()

            with anyio.fail_after(seconds + 30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(chaos)
                    await outcomes.drive(call, stop, CONCURRENCY)
            ttl = plane.discovery_settings.ttl
    on_victim = [a for a in log.attempts if a[2] == victim.instance]
    after_kill = [a for a in on_victim if a[1] >= killed_at]
    refused = [a for a in after_kill if a[3] == "Unavailable"]
    first_refused = min((a[1] for a in refused), default=None)
    # The client cannot know before its first failed attempt there: what it sent until then
    # was in flight on the killed worker.
    first_failure = min((a[1] for a in after_kill if a[3] != "ok"), default=killed_at)
    last_chosen = max((a[0] for a in on_victim), default=killed_at)
    failed_attempts_elsewhere = collections.Counter(
        a[3] for a in log.attempts if a[2] != victim.instance and a[3] != "ok"
    )
    return {
        "calls": outcomes.started,
        "outcomes": dict(outcomes.counts),
        "every_call_one_outcome": outcomes.accounted,
        "failed_calls_started_after_first_failure_seen": sum(
            1 for t, _ in outcomes.failed if t > first_failure
        ),
        "first_failure_seen_after_kill_ms": round((first_failure - killed_at) * 1000, 1),
        "last_choice_after_first_failure_ms": round((last_chosen - first_failure) * 1000, 1),
        "victim_attempts_after_kill": dict(collections.Counter(a[3] for a in after_kill)),
        "victim_inflight_at_kill": sum(1 for a in on_victim if a[0] < killed_at <= a[1]),
        "failed_attempts_on_other_workers": dict(failed_attempts_elsewhere),
        "last_choice_after_first_refused_ms": (
            None if first_refused is None else round((last_chosen - first_refused) * 1000, 1)
        ),
        "last_choice_after_kill_ms": round((last_chosen - killed_at) * 1000, 1),
        "discovery_dropped_after_ms": round((dropped_at - killed_at) * 1000, 1),
        "discovery_ttl_s": ttl,
    }


# -- rolling restart ----------------------------------------------------------------------


async def rolling(backend: str, settle: float) -> Result:
    log = AttemptLog()
    with discovery_env() as env:
        async with fleet(env, backend) as f, client_plane(env, log) as plane:
            ids = await start_workers(f, [0.0, 0.0, 0.0])
            router = plane.router("echo", route="p2c")
            await listed(router, ids)
            outcomes = Outcomes()
            stop = anyio.Event()
            drains: list[float] = []

            async def call() -> None:
                await router.request(PAYLOAD, timeout=5.0)

            async def restart_all() -> None:
                await anyio.sleep(settle)
                for old in list(f.workers):
                    began = time.perf_counter()
                    old.terminate()
                    code = await old.wait()
                    if code != 0:
                        raise RuntimeError(f"worker {old.instance} exited with {code}")
                    drains.append(time.perf_counter() - began)
                    ids.discard(old.instance)
                    ids.add((await f.start()).instance)
                    await listed(router, ids)
                    await anyio.sleep(settle)
                stop.set()

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(restart_all)
                    await outcomes.drive(call, stop, CONCURRENCY)
    return {
        "calls": outcomes.started,
        "outcomes": dict(outcomes.counts),
        "every_call_one_outcome": outcomes.accounted,
        "failed_attempts": dict(collections.Counter(a[3] for a in log.attempts if a[3] != "ok")),
        "stop_seconds": [round(d, 3) for d in drains],
    }


# -- hash key movement --------------------------------------------------------------------


async def hash_moves(backend: str, keys: int) -> Result:
    async def owners(router: Any) -> dict[str, str]:
        found: dict[str, str] = {}
        todo = iter(range(keys))

        async def caller() -> None:
            for n in todo:
                key = f"session-{n}"
                found[key] = (await router.request(b"", key=key, timeout=10.0)).decode()

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(caller)
        return found

    with discovery_env() as env:
        async with fleet(env, backend) as f, client_plane(env) as plane:
            ids = await start_workers(f, [0.0, 0.0, 0.0])
            router = plane.router("whoami", route="hash")
            await listed(router, ids)
            before = await owners(router)
            newcomer = (await f.start()).instance
            await listed(router, ids | {newcomer})
            after = await owners(router)
    moved = [k for k in before if before[k] != after[k]]
    shares = collections.Counter(after.values())
    return {
        "keys": keys,
        "moved_fraction": round(len(moved) / keys, 4),
        "moved_to_the_newcomer": all(after[k] == newcomer for k in moved),
        "newcomer_share": round(shares[newcomer] / keys, 4),
        "shares_before": sorted(
            round(n / keys, 3) for n in collections.Counter(before.values()).values()
        ),
    }


# -- the command --------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Result:
    report: Result = {"backend": args.backend}
    chosen = args.only.split(",") if args.only else list(EXPERIMENTS)
    for name in chosen:
        began = time.perf_counter()
        if name == "cost":
            report[name] = await router_cost(100_000)
        elif name == "overhead":
            report[name] = await overhead(args.backend, args.rounds, args.seconds)
        elif name == "slow":
            report[name] = await slow_worker(args.backend, args.seconds * 1.5, args.delay)
        elif name == "failover":
            report[name] = await failover(args.backend, 10.0, 3.0)
        elif name == "rolling":
            report[name] = await rolling(args.backend, 1.0)
        elif name == "hash":
            # Instance ids are random, so is the ring: a few fleets, not one.
            trials = [await hash_moves(args.backend, 10_000) for _ in range(args.hash_trials)]
            moved = [trial["moved_fraction"] for trial in trials]
            report[name] = {"moved_fraction_mean": round(statistics.mean(moved), 4)}
            report[name]["trials"] = trials
        else:
            raise SystemExit(f"unknown experiment {name!r}: expected {', '.join(EXPERIMENTS)}")
        report[name]["took_s"] = round(time.perf_counter() - began, 1)
        if not args.json:
            print(f"{name}: {json.dumps(report[name])}", flush=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--only", help=f"comma-separated, of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--rounds", type=int, default=3, help="overhead: interleaved rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="overhead: seconds a phase")
    parser.add_argument("--delay", type=float, default=0.002, help="slow: the fast echo's delay")
    parser.add_argument("--hash-trials", type=int, default=5, help="hash: fleets to try")
    parser.add_argument("--json", action="store_true", help="one JSON object at the end")
    args = parser.parse_args()
    report = anyio.run(run, args, backend=args.backend)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
