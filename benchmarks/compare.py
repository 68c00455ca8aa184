"""Side by side, in one run: requestplane's transports against the stacks a user would
otherwise pick, measured by the same load loop in separate server and client processes.

Every entry runs once per round, rounds interleaved so that machine noise hits all entries
alike; the table shows medians over rounds and the ratios the targets are stated in.

    python benchmarks/compare.py                      # echo, stream, large, many; 3 rounds
    python benchmarks/compare.py --rounds 5 --scenario echo --out results.jsonl
    python benchmarks/compare.py --scenario sweep     # req/s vs concurrency, for plot.py

Scenarios: echo (1 KiB, 64 concurrent), stream (100 x 1 KiB chunks, 64 concurrent), large
(1 MiB, 4 concurrent), many (10,000 concurrent requests from one client: memory), sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
from requestplane_bench.brokers import embedded_brokers
from requestplane_bench.observers import observing_plugins

from requestplane_core.manager import installed_transports

HERE = Path(__file__).resolve().parent
Record = dict[str, Any]


@attrs.frozen
class Entry:
    label: str
    argv: tuple[str, ...]  # after the interpreter
    peer: bool  # a benchmarks/ script (else `requestplane bench`)
    observed: bool = False  # keep the installed observing plugins (else they are disabled)


def peer(label: str, script: str, *flags: str) -> Entry:
    return Entry(label, (str(HERE / script), *flags), peer=True)


def bench(label: str, *flags: str, observed: bool = False) -> Entry:
    argv = ("-m", "requestplane_core.cli", "bench", "--json", *flags)
    return Entry(label, argv, peer=False, observed=observed)


def _observers() -> list[str]:
    return observing_plugins(installed_transports())


def _transports() -> list[str]:
    return [m for m in ("tcp", "http", "nats") if m in installed_transports().transports]


def _load(args: argparse.Namespace, payload: int, concurrency: int) -> tuple[str, ...]:
    return (
        "--payload",
        str(payload),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    )


def echo_entries(args: argparse.Namespace, payload: int = 1024, c: int = 64) -> list[Entry]:
    load = _load(args, payload, c)
    out = [
        peer("raw asyncio (inline)", "raw_asyncio.py", "--inline", *load),
        peer("raw asyncio (task/request)", "raw_asyncio.py", *load),
        peer("raw uvloop (inline)", "raw_asyncio.py", "--inline", "--uvloop", *load),
        peer("raw anyio/asyncio (inline)", "raw_anyio.py", "--inline", *load),
        peer("raw anyio/trio (inline)", "raw_anyio.py", "--inline", "--backend", "trio", *load),
        peer("raw anyio/trio (task/request)", "raw_anyio.py", "--backend", "trio", *load),
        peer("raw anyio/asyncio (batched, inline)", "raw_anyio.py", "--batched", "--inline", *load),
        peer(
            "raw anyio/trio (batched, inline)",
            "raw_anyio.py",
            "--batched",
            "--inline",
            "--backend",
            "trio",
            *load,
        ),
        peer(
            "raw anyio/trio (batched, task/request)",
            "raw_anyio.py",
            "--batched",
            "--backend",
            "trio",
            *load,
        ),
        peer("nats-py request/reply", "nats_reqrep.py", *load),
        peer("grpcio aio", "grpc_echo.py", *load),
        peer("httpx + hypercorn (h2c)", "httpx_hypercorn.py", *load),
    ]
    for mode in _transports():
        out.append(bench(f"{mode} asyncio", "--mode", mode, "--backend", "asyncio", *load))
        out.append(bench(f"{mode} trio", "--mode", mode, "--backend", "trio", *load))
        out.append(
            bench(f"{mode} uvloop", "--mode", mode, "--backend", "asyncio", "--uvloop", *load)
        )
    # The same echo as a synchronous handler, which a transport may answer where it reads
    # (no task, no cancel scope): the like-for-like peer of the raw inline echoes.
    for mode in [m for m in _transports() if m in ("tcp", "nats")]:
        sync = ("--mode", mode, "--handler", "sync", *load)
        out.append(bench(f"{mode} asyncio sync", "--backend", "asyncio", *sync))
        out.append(bench(f"{mode} trio sync", "--backend", "trio", *sync))
        if mode == "tcp":
            out.append(bench("tcp uvloop sync", "--backend", "asyncio", "--uvloop", *sync))
    if "tcp" in _transports() and _observers():
        label = f"tcp asyncio + {','.join(_observers())} hooks"
        out.append(bench(label, "--mode", "tcp", "--backend", "asyncio", *load, observed=True))
    if "tcp" in _transports():
        out.append(
            bench("tcp asyncio direct", "--mode", "tcp", "--backend", "asyncio", "--direct", *load)
        )
    return out


def stream_entries(args: argparse.Namespace) -> list[Entry]:
    load = (*_load(args, 16, 64), "--chunks", "100", "--chunk-size", "1024")
    out = [
        peer("raw asyncio stream", "raw_asyncio.py", "--kind", "stream", *load),
        peer("raw uvloop stream", "raw_asyncio.py", "--kind", "stream", "--uvloop", *load),
        peer(
            "raw anyio/trio stream", "raw_anyio.py", "--kind", "stream", "--backend", "trio", *load
        ),
    ]
    for mode in _transports():
        for backend in ("asyncio", "trio"):
            out.append(
                bench(
                    f"{mode} {backend} stream",
                    "--mode",
                    mode,
                    "--backend",
                    backend,
                    "--stream",
                    *load,
                )
            )
    return out


def large_entries(args: argparse.Namespace) -> list[Entry]:
    load = _load(args, 1 << 20, 4)
    out = [
        peer("raw asyncio 1 MiB (inline)", "raw_asyncio.py", "--inline", *load),
        peer(
            "raw anyio/trio 1 MiB (inline)", "raw_anyio.py", "--inline", "--backend", "trio", *load
        ),
    ]
    for mode in [m for m in _transports() if m != "nats"]:  # nats-server's max_payload: 1 MiB
        for backend in ("asyncio", "trio"):
            out.append(
                bench(f"{mode} {backend} 1 MiB", "--mode", mode, "--backend", backend, *load)
            )
    return out


def many_entries(args: argparse.Namespace) -> list[Entry]:
    load = ("--payload", "1024", "--concurrency", "10000", "--requests", "50000", "--warmup", "0")
    out = [peer("raw asyncio 10k in flight", "raw_asyncio.py", *load)]
    # http is left out: at 10,000 in flight it needs minutes (see docs/benchmarks.md).
    for mode in [m for m in _transports() if m != "http"]:
        for backend in ("asyncio", "trio"):
            out.append(
                bench(
                    f"{mode} {backend} 10k in flight",
                    "--mode",
                    mode,
                    "--backend",
                    backend,
                    "--timeout",
                    "60",
                    *load,
                )
            )
    return out


def sweep_entries(args: argparse.Namespace) -> list[Entry]:
    out = []
    for c in (1, 4, 16, 64, 256):
        load = _load(args, 1024, c)
        out += [
            peer(f"raw asyncio c={c}", "raw_asyncio.py", "--inline", *load),
            peer(f"raw anyio/trio c={c}", "raw_anyio.py", "--inline", "--backend", "trio", *load),
            peer(f"nats-py c={c}", "nats_reqrep.py", *load),
            peer(f"grpcio c={c}", "grpc_echo.py", *load),
        ]
        for mode in _transports():
            for backend in ("asyncio", "trio"):
                out.append(
                    bench(f"{mode} {backend} c={c}", "--mode", mode, "--backend", backend, *load)
                )
        if "tcp" in _transports():
            sync = ("--mode", "tcp", "--backend", "asyncio", "--handler", "sync", *load)
            out.append(bench(f"tcp asyncio sync c={c}", *sync))
    return out


SCENARIOS: dict[str, Callable[[argparse.Namespace], list[Entry]]] = {
    "echo": echo_entries,
    "stream": stream_entries,
    "large": large_entries,
    "many": many_entries,
    "sweep": sweep_entries,
}


async def measure(entry: Entry, env: dict[str, str]) -> Record:
    done = await anyio.run_process([sys.executable, *entry.argv], env=env, check=False)
    lines = [ln for ln in done.stdout.decode().splitlines() if ln.startswith("{")]
    if not lines:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {"failure": f"exit status {done.returncode}: " + " | ".join(tail)}
    record: Record = json.loads(lines[-1])
    return record


def _median(records: Sequence[Record], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None and not r.get("failure")]
    return statistics.median(values) if values else None


def summarize(label: str, records: Sequence[Record]) -> Record:
    ok = [r for r in records if not r.get("failure")]
    rates = [r["req_per_s"] for r in ok]
    return {
        "label": label,
        "runs": len(records),
        "failures": [r["failure"] for r in records if r.get("failure")],
        "req_per_s": _median(records, "req_per_s"),
        "req_per_s_min": min(rates) if rates else None,
        "req_per_s_max": max(rates) if rates else None,
        "p50_us": _median(records, "p50_us"),
        "p99_us": _median(records, "p99_us"),
        "chunks_per_s": _median(records, "chunks_per_s"),
        "client_cpu_us": _median(records, "client_cpu_us"),
        "server_cpu_us": _median(records, "server_cpu_us"),
        "errors": sum(r.get("errors", 0) for r in ok),
        "client_rss_kib": max((r.get("client_rss_kib") or 0 for r in ok), default=None),
        "server_rss_kib": max((r.get("server_rss_kib") or 0 for r in ok), default=None),
    }


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: Sequence[Record]) -> str:
    lines = [
        "| stack | req/s (median) | min-max | p50 ms | p99 ms | chunks/s |"
        " CPU us/req client + server | errors | client / server peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["req_per_s"] is None:
            lines.append(f"| {r['label']} | FAILED: {r['failures'][0][:120]} | | | | | | | |")
            continue
        cpu = "-"
        if r["client_cpu_us"] is not None and r["server_cpu_us"] is not None:
            cpu = f"{r['client_cpu_us']:,.1f} + {r['server_cpu_us']:,.1f}"
        rss = "-"
        if r["client_rss_kib"] and r["server_rss_kib"]:
            rss = f"{r['client_rss_kib'] / 1024:.0f} / {r['server_rss_kib'] / 1024:.0f}"
        lines.append(
            f"| {r['label']} | {_n(r['req_per_s'])} | {_n(r['req_per_s_min'])}-"
            f"{_n(r['req_per_s_max'])} | {_n((r['p50_us'] or 0) / 1000, 2)} | "
            f"{_n((r['p99_us'] or 0) / 1000, 2)} | {_n(r['chunks_per_s'])} | {cpu} | "
            f"{r['errors']} | "
            f"{rss} |"
        )
    return "\n".join(lines)


TARGETS = (
    # (what, numerator label, denominator label, metric, target)
    # An async handler runs in a task of its own under a cancel scope; a synchronous one is
    # answered where the request is read, as the raw inline echoes answer theirs.
    (
        "TCP asyncio, sync handler vs raw asyncio echo (inline)",
        "tcp asyncio sync",
        "raw asyncio (inline)",
        "req_per_s",
        0.85,
    ),
    (
        "TCP asyncio, async handler vs raw asyncio echo (task/request)",
        "tcp asyncio",
        "raw asyncio (task/request)",
        "req_per_s",
        0.85,
    ),
    (
        "TCP asyncio, async handler vs raw asyncio echo (inline)",
        "tcp asyncio",
        "raw asyncio (inline)",
        "req_per_s",
        0.85,
    ),
    ("TCP asyncio vs nats-py", "tcp asyncio", "nats-py request/reply", "req_per_s", 2.0),
    (
        "TCP asyncio, sync handler vs nats-py",
        "tcp asyncio sync",
        "nats-py request/reply",
        "req_per_s",
        2.0,
    ),
    (
        "TCP trio, sync handler vs raw anyio on trio",
        "tcp trio sync",
        "raw anyio/trio (inline)",
        "req_per_s",
        1.0,
    ),
    ("TCP trio vs raw anyio on trio", "tcp trio", "raw anyio/trio (inline)", "req_per_s", 1.0),
    (
        "TCP trio, sync handler vs raw anyio on trio, batched",
        "tcp trio sync",
        "raw anyio/trio (batched, inline)",
        "req_per_s",
        1.0,
    ),
    (
        "TCP trio, async handler vs raw anyio on trio, batched (task/request)",
        "tcp trio",
        "raw anyio/trio (batched, task/request)",
        "req_per_s",
        1.0,
    ),
    (
        "TCP uvloop, sync handler vs raw uvloop",
        "tcp uvloop sync",
        "raw uvloop (inline)",
        "req_per_s",
        0.8,
    ),
    ("TCP uvloop vs raw uvloop", "tcp uvloop", "raw uvloop (inline)", "req_per_s", 0.8),
    (
        "NATS asyncio, sync handler vs nats-py request/reply",
        "nats asyncio sync",
        "nats-py request/reply",
        "req_per_s",
        0.9,
    ),
    (
        "NATS asyncio vs nats-py request/reply",
        "nats asyncio",
        "nats-py request/reply",
        "req_per_s",
        0.9,
    ),
    (
        "TCP stream chunks/s vs raw asyncio",
        "tcp asyncio stream",
        "raw asyncio stream",
        "chunks_per_s",
        0.85,
    ),
    (
        "TCP trio stream chunks/s vs raw anyio/trio",
        "tcp trio stream",
        "raw anyio/trio stream",
        "chunks_per_s",
        0.85,
    ),
    (
        "TCP 1 MiB x4 vs raw asyncio",
        "tcp asyncio 1 MiB",
        "raw asyncio 1 MiB (inline)",
        "req_per_s",
        0.8,
    ),
    (
        "TCP trio 1 MiB x4 vs raw anyio/trio",
        "tcp trio 1 MiB",
        "raw anyio/trio 1 MiB (inline)",
        "req_per_s",
        0.8,
    ),
    (
        "manager (no observing plugins) vs direct transport client (TCP asyncio)",
        "tcp asyncio",
        "tcp asyncio direct",
        "req_per_s",
        0.95,
    ),
)


def _bound(row: Record) -> float | None:
    """The rate one dedicated core per process would allow: the busier process limits it."""
    client, server = row.get("client_cpu_us"), row.get("server_cpu_us")
    if not client or not server:
        return None
    return 1e6 / max(client, server)


def ratios(rows: dict[str, Record]) -> list[str]:
    out = [
        "| target | measured ratio (median rates) | CPU-bound ratio | goal | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for what, num, den, metric, goal in TARGETS:
        a, b = rows.get(num), rows.get(den)
        if not a or not b or not a.get(metric) or not b.get(metric):
            continue
        ratio = a[metric] / b[metric]
        bound_a, bound_b = _bound(a), _bound(b)
        cpu_ratio = bound_a / bound_b if bound_a and bound_b else None
        verdict = "met" if ratio >= goal else "MISSED"
        cpu_text = "-" if cpu_ratio is None else f"{cpu_ratio:.2f}x"
        out.append(f"| {what} | {ratio:.2f}x | {cpu_text} | >= {goal}x | {verdict} |")
    for label, row in rows.items():
        if "10k" in label and row["req_per_s"] is not None:
            verdict = "completed" if row["errors"] == 0 and not row["failures"] else "FAILED"
            out.append(
                f"| {label}: 50,000 requests, 10,000 in flight | - | - | all complete | {verdict} |"
            )
    return out


def _append(path: str, record: Record) -> None:
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")


async def main(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    entries = [e for name in args.scenario for e in SCENARIOS[name](args)]
    if args.only:
        entries = [e for e in entries if any(word in e.label for word in args.only)]
    results: dict[str, list[Record]] = {e.label: [] for e in entries}
    # The project's rows measure the core and the transport: observing plugins installed in
    # this environment are disabled, except in the one row that measures them.
    plain = dict(env)
    if _observers():
        denied = [env.get("REQUESTPLANE_DISABLE_PLUGINS", ""), *_observers()]
        plain["REQUESTPLANE_DISABLE_PLUGINS"] = ",".join(d for d in denied if d)
    # The brokers the transports need (a nats-server), offered by their plugins.
    async with embedded_brokers(installed_transports(), _transports(), env, _note) as brokers:
        started = {name: value for name, value in brokers.items() if env.get(name) != value}
        env.update(started)
        plain.update(started)
        for round_ in range(args.rounds):
            for i, entry in enumerate(entries, 1):
                argv = list(entry.argv)
                if entry.peer and "nats_reqrep.py" in argv[0]:
                    argv += ["--url", env["REQUESTPLANE_NATS_URL"]]
                sys.stderr.write(
                    f"\rround {round_ + 1}/{args.rounds} {i}/{len(entries)} {entry.label:<40}"
                )
                sys.stderr.flush()
                entry_env = env if entry.observed or entry.peer else plain
                record = await measure(attrs.evolve(entry, argv=tuple(argv)), entry_env)
                record["label"], record["round"] = entry.label, round_
                results[entry.label].append(record)
                if args.out:
                    _append(args.out, record)
    sys.stderr.write("\n")
    rows = {label: summarize(label, records) for label, records in results.items()}
    print(f"medians of {args.rounds} round(s), {args.duration:g} s per run\n")
    print(table(list(rows.values())))
    print()
    print("\n".join(ratios(rows)))
    return 0 if all(not r["failures"] and r["errors"] == 0 for r in rows.values()) else 1


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="repeatable (default: echo, stream, large, many)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--only", action="append", help="entries whose label contains this")
    parser.add_argument("--out", help="append every run's record to this JSON-lines file")
    args = parser.parse_args(argv)
    args.scenario = args.scenario or ["echo", "stream", "large", "many"]
    return args


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse()))
