"""``requestplane bench`` end to end on the TCP transport, and its load loop's accounting."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

import anyio
import pytest
from requestplane_bench.case import Case
from requestplane_bench.command import add_arguments, plan_cases
from requestplane_bench.latency import LatencyRecorder, percentile
from requestplane_bench.load import LoadPlan, run_load

KEYS = {
    "mode",
    "backend",
    "kind",
    "payload",
    "concurrency",
    "requests",
    "errors",
    "seconds",
    "req_per_s",
    "p50_us",
    "p99_us",
    "chunks_per_s",
}


def bench(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requestplane_core.cli", "bench", "--mode", "tcp", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "backend",
    [
        "asyncio",
        "trio",
        pytest.param(
            "asyncio+uvloop",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
            ),
        ),
    ],
)
def test_bench_tcp_json(backend: str) -> None:
    loop = (
        ["--backend", "asyncio", "--uvloop"]
        if backend == "asyncio+uvloop"
        else ["--backend", backend]
    )
    done = bench(*loop, "--requests", "200", "--concurrency", "8", "--warmup", "0", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 1
    record = records[0]
    assert KEYS <= set(record)
    assert (record["mode"], record["backend"], record["kind"]) == ("tcp", backend, "unary")
    assert (record["payload"], record["concurrency"]) == (1024, 8)
    assert record["requests"] == 200
    assert record["errors"] == 0
    assert record["req_per_s"] > 0 and record["p99_us"] >= record["p50_us"] > 0
    assert record["server_rss_kib"] > 0 and record["client_rss_kib"] > 0


def test_bench_tcp_stream_table() -> None:
    done = bench(
        "--backend",
        "asyncio",
        "--stream",
        "--chunks",
        "5",
        "--chunk-size",
        "100",
        "--requests",
        "20",
        "--concurrency",
        "4",
        "--warmup",
        "0",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("mode "))
    header, row = lines[at : at + 2]
    assert header.split()[:3] == ["mode", "backend", "kind"]
    assert row.split()[:4] == ["tcp", "asyncio", "stream", "x5"]
    assert row.split()[-1] == "0"  # errors


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_bench_synchronous_handler(backend: str) -> None:
    done = bench("--backend", backend, "--handler", "sync", "--requests", "200", "--warmup", "0")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("tcp "))
    assert row.split()[:4] == ["tcp", backend, "unary", "sync"]
    assert row.split()[-1] == "0"  # errors
    done = bench("--backend", backend, "--handler", "sync", "--requests", "50", "--json")
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["handler"], record["requests"], record["errors"]) == ("sync", 50, 0)


def test_bench_synchronous_handler_is_unary_only() -> None:
    done = bench("--handler", "sync", "--stream")
    assert done.returncode != 0
    assert "--handler sync measures unary requests" in done.stderr


def test_bench_with_failing_requests_exits_non_zero() -> None:
    done = bench(
        "--backend",
        "asyncio",
        "--requests",
        "50",
        "--concurrency",
        "4",
        "--warmup",
        "0",
        "--json",
        "--endpoint",
        "fail",
    )
    assert done.returncode == 1
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["errors"] == 50 and record["requests"] == 0
    assert "RemoteError" in record["error_samples"][0]
    assert "FAILED tcp/asyncio unary" in done.stderr


def test_bench_unknown_mode_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "requestplane_core.cli", "bench", "--mode", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "unknown request plane mode 'nope'" in done.stderr


def test_percentiles_are_nearest_rank() -> None:
    recorder = LatencyRecorder(capacity=2)
    for value in range(100, 0, -1):  # grows past its capacity
        recorder.add(value)
    values = recorder.sorted()
    assert values == list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50,
        99,
        100,
    )
    assert percentile([], 0.5) == 0


def _failing_every(n: int) -> Callable[[], Awaitable[None]]:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        mine = calls
        await anyio.lowlevel.checkpoint()
        if mine % n == 0:
            raise ValueError("boom")

    return call


@pytest.mark.anyio
async def test_load_counts_errors_and_requests() -> None:
    with anyio.fail_after(10):
        outcome = await run_load(_failing_every(3), LoadPlan(concurrency=5, requests=30))
    assert outcome.completed + outcome.errors == 30
    assert outcome.errors == 10 and outcome.lost == 0
    assert len(outcome.latencies_ns) == 20
    assert outcome.error_samples == ("ValueError: boom",)


@pytest.mark.anyio
async def test_load_counts_a_stalled_run_as_lost() -> None:
    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        outcome = await run_load(hang, LoadPlan(concurrency=7, requests=100, stall_timeout=0.3))
    assert (outcome.completed, outcome.errors, outcome.lost) == (0, 0, 7)


@pytest.mark.parametrize(
    ("text", "size"), [("512", 512), ("1k", 1024), ("1KiB", 1024), ("2MiB", 2 << 20), ("0", 0)]
)
def test_sizes_take_binary_units(text: str, size: int) -> None:
    from requestplane_bench.command import _size

    assert _size(text) == size


def test_a_size_that_is_not_one_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "requestplane_core.cli", "bench", "--payload", "1MB"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "'1MB' is not a size" in done.stderr


def _plan(*flags: str) -> list[Case]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cases, _notes = plan_cases(parser.parse_args(list(flags)))
    return cases


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_bench_fleet_round_robin_json(backend: str) -> None:
    done = bench(
        "--backend",
        backend,
        "--workers",
        "3",
        "--route",
        "round_robin",
        "--requests",
        "300",
        "--concurrency",
        "8",
        "--warmup",
        "0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["mode"], record["backend"], record["workers"], record["route"]) == (
        "tcp",
        backend,
        3,
        "round_robin",
    )
    assert (record["requests"], record["errors"]) == (300, 0)
    # Three distinct server processes, each its own instance, took turns exactly.
    assert list(record["instance_requests"].values()) == [100, 100, 100]
    assert record["spread"] == 1.0
    assert record["server_rss_kib"] > 0 and record["server_cpu_us"] is not None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_bench_fleet_table(backend: str) -> None:
    done = bench("--backend", backend, "--workers", "2", "--requests", "200", "--warmup", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("mode "))
    assert header.split()[-4:] == ["us", "fleet", "spread", "errors"]
    row = next(line for line in lines if line.startswith("tcp "))
    assert row.split()[:3] == ["tcp", backend, "unary"]
    assert row.split()[-4:-2] == ["2", "p2c"] and row.split()[-1] == "0"
    (spread_line,) = [line for line in lines if "requests per instance" in line]
    counts = spread_line.split("requests per instance ")[1].split(" (")[0].split(" / ")
    assert len(counts) == 2 and sum(int(n.replace(",", "")) for n in counts) == 200


def test_bench_fleet_with_failing_requests_exits_non_zero() -> None:
    done = bench(
        "--backend",
        "trio",
        "--workers",
        "2",
        "--endpoint",
        "fail",
        "--requests",
        "20",
        "--warmup",
        "0",
        "--json",
    )
    assert done.returncode == 1
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["errors"] == 20 and record["requests"] == 0
    assert "FAILED tcp/trio 2 workers p2c unary" in done.stderr


def test_bench_fleet_refuses_direct() -> None:
    done = bench("--workers", "2", "--direct")
    assert done.returncode == 1
    assert "--workers routes through the manager" in done.stderr


def test_a_run_of_every_transport_ends_with_one_fleet_case() -> None:
    cases = _plan()
    fleets = [case for case in cases if case.workers]
    assert fleets == [cases[-1]]
    assert (fleets[0].mode, fleets[0].backend, fleets[0].workers, fleets[0].route) == (
        "tcp",
        "asyncio",
        3,
        "p2c",
    )
    assert not any(case.workers for case in _plan("--workers", "0"))
    assert not any(case.workers for case in _plan("--mode", "tcp"))
    assert {case.workers for case in _plan("--mode", "tcp", "--workers", "4")} == {4}


@pytest.mark.skipif(
    importlib.util.find_spec("requestplane_nats") is None, reason="the nats plugin is not installed"
)
def test_bench_nats_starts_the_broker_its_plugin_offers() -> None:
    # No URL configured: the nats plugin's requestplane_embedded_broker hook starts one.
    env = {k: v for k, v in os.environ.items() if k != "REQUESTPLANE_NATS_URL"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "requestplane_core.cli", "bench", "--mode", "nats"),
            *("--backend", "asyncio", "--requests", "100", "--concurrency", "4"),
            *("--warmup", "0", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["mode"], record["requests"], record["errors"]) == ("nats", 100, 0)
    assert "nats: started its embedded broker, REQUESTPLANE_NATS_URL=nats://127.0.0.1:" in (
        done.stderr
    )
