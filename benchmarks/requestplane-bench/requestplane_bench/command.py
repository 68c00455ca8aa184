"""``requestplane bench``: its flags, the cases they select, and the verdict."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import attrs

from requestplane_core import ConfigError, installed_transports
from requestplane_core.plugin_api import ROUTE_MODES, PluginRegistry

from .brokers import broker_for
from .case import Case
from .observers import observing_plugins
from .progress import ProgressBar
from .record import is_clean
from .runner import RunResult, run_cases
from .table import format_fleets, format_table, human_bytes

__all__ = ["add_arguments", "plan_cases", "run"]

BACKENDS = ("asyncio", "trio")
# The fleet case a run of every transport ends with: the router at work, in a few seconds.
FLEET_MODE, FLEET_BACKEND, FLEET_WORKERS, FLEET_ROUTE = "tcp", "asyncio", 3, "p2c"
# direct calls one chosen instance: not a fleet's spread.
FLEET_ROUTES = tuple(route for route in ROUTE_MODES if route != "direct")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}


def _size(text: str) -> int:
    digits = text.strip().rstrip("bBiIkKmM ")
    unit = text.strip()[len(digits) :].strip().lower()
    try:
        value = int(digits) * _UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: bytes, or with a unit as in 512, 1KiB, 1k, 1MiB, 1m"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers >= 0")
    return value


def _seconds(minimum: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= minimum or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= {minimum}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Measure the installed transports on loopback: a server process and a client process "
        "per transport and event loop, on each transport's embedded default settings "
        "(REQUESTPLANE_* variables apply); then one fleet case (--workers). Exits non-zero if "
        "any request failed or was lost."
    )
    parser.add_argument(
        "--mode",
        action="append",
        metavar="MODE",
        help="transport to measure (repeatable; default: every installed one)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="event loop (repeatable; default: asyncio and trio)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run the asyncio backend on uvloop")
    parser.add_argument(
        "--payload",
        type=_size,
        default=1024,
        metavar="BYTES",
        help="request payload, echoed back (default: 1KiB; units: KiB, MiB)",
    )
    parser.add_argument(
        "--concurrency",
        type=_count,
        action="append",
        metavar="N",
        help="requests in flight from the one client (repeatable; default: 64)",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--duration",
        type=_seconds(0.01),
        default=None,
        metavar="SECONDS",
        help="measure each case this long (default: 2)",
    )
    amount.add_argument(
        "--requests",
        type=_count,
        metavar="N",
        help="measure each case for N requests instead of a duration",
    )
    parser.add_argument(
        "--warmup",
        type=_seconds(0.0),
        default=0.5,
        metavar="SECONDS",
        help="unmeasured calls before each case (default: 0.5)",
    )
    parser.add_argument(
        "--stream", action="store_true", help="measure streamed responses instead of unary requests"
    )
    parser.add_argument(
        "--chunks",
        type=_count,
        default=100,
        metavar="N",
        help="chunks per streamed response (default: 100)",
    )
    parser.add_argument(
        "--chunk-size",
        type=_size,
        default=1024,
        metavar="BYTES",
        help="bytes per chunk (default: 1KiB)",
    )
    parser.add_argument(
        "--handler",
        choices=("async", "sync"),
        default="async",
        help="the echo endpoint's handler: async def (default) or a synchronous def, which "
        "transports may answer without a task of its own (unary only)",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="bypass the RequestPlane manager: the transport's client and "
        "serve() directly (to measure what the manager costs)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="measure a fleet: N server processes, each its own instance in a discovery "
        "directory of the run's own, and a client that routes across them (default: one "
        "server; a run of every transport, without --mode, adds one fleet case: "
        f"{FLEET_MODE}, {FLEET_BACKEND}, {FLEET_WORKERS} workers, {FLEET_ROUTE}; "
        "--workers 0 leaves it out)",
    )
    parser.add_argument(
        "--route",
        choices=FLEET_ROUTES,
        default=FLEET_ROUTE,
        help=f"how the client's router picks a worker per call (default: {FLEET_ROUTE})",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds(0.1),
        default=15.0,
        metavar="SECONDS",
        help="no request completing for this long ends the case and counts "
        "those in flight as lost (default: 15)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="run both workers under cProfile and write DIR/<role>-<mode>-"
        "<loop>[-<kind>].prof (read them with python -m pstats)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per case instead of the table"
    )
    # Calls an endpoint that always raises: proves a run with errors fails (tests use it).
    parser.add_argument(
        "--endpoint", choices=("echo", "fail"), default="echo", help=argparse.SUPPRESS
    )


def _profile_dir(path: str | None) -> str | None:
    if path is None:
        return None
    directory = Path(path).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory)


def plan_cases(
    args: argparse.Namespace, registry: PluginRegistry | None = None
) -> tuple[list[Case], list[str]]:
    """The cases to run, and why some combinations were left out."""
    registry = registry or installed_transports()
    modes: list[str] = args.mode or sorted(registry.transports)
    if not modes:
        raise ConfigError('no transport is installed: pip install "requestplane[tcp]"')
    backends: list[str] = list(dict.fromkeys(args.backend or BACKENDS))
    if args.backend is None and importlib.util.find_spec("trio") is None:
        backends.remove("trio")
    if args.uvloop:
        if "asyncio" not in backends:
            raise ConfigError("--uvloop runs the asyncio backend: add --backend asyncio")
        if importlib.util.find_spec("uvloop") is None:
            raise ConfigError("--uvloop needs uvloop: pip install uvloop")
    kind = "stream" if args.stream else "unary"
    if args.stream and args.handler == "sync":
        raise ConfigError("--handler sync measures unary requests: leave out --stream")
    duration = None if args.requests is not None else (args.duration or 2.0)
    workers: int = args.workers or 0
    if workers and args.direct:
        raise ConfigError("--workers routes through the manager: leave out --direct")
    notes: list[str] = []
    cases: list[Case] = []
    for mode in dict.fromkeys(modes):
        caps = registry.transport(mode).spec.capabilities  # unknown mode: says what to install
        try:
            broker_for(registry, mode, os.environ)  # started by the run, if it needs one
        except ConfigError as exc:
            if args.mode:
                raise ConfigError(f"{mode}: {exc}") from None
            notes.append(f"{mode}: skipped, {exc}")
            continue
        if kind == "stream" and not caps.streaming:
            notes.append(f"{mode}: skipped, it does not stream")
            continue
        for backend in backends:
            if backend not in caps.backends:
                notes.append(f"{mode}: skipped on {backend}, which it does not support")
                continue
            for concurrency in dict.fromkeys(args.concurrency or [64]):
                cases.append(
                    Case(
                        mode=mode,
                        backend=backend,
                        kind=kind,
                        uvloop=args.uvloop and backend == "asyncio",
                        payload=args.payload,
                        concurrency=concurrency,
                        duration=duration,
                        requests=args.requests,
                        warmup=args.warmup,
                        chunks=args.chunks,
                        chunk_size=args.chunk_size,
                        endpoint=args.endpoint,
                        handler=args.handler,
                        direct=args.direct,
                        stall_timeout=args.timeout,
                        profile=_profile_dir(args.profile),
                        workers=workers,
                        route=args.route,
                    )
                )
    fleet = _default_fleet_case(args, cases)
    if fleet is not None:
        cases.append(fleet)
    observers = observing_plugins(registry)
    if observers and not args.direct:
        names = ",".join(observers)
        notes.append(
            f"observing plugins run on every request: {names} (measured with them; "
            f"REQUESTPLANE_DISABLE_PLUGINS={names} measures without)"
        )
    return cases, notes


def _default_fleet_case(args: argparse.Namespace, cases: list[Case]) -> Case | None:
    """The fleet case that ends a run of every transport (no --mode, no --workers): like
    that run's tcp case on asyncio, served by a fleet. None when that case is not run."""
    if args.mode or args.workers is not None:
        return None
    for case in cases:
        if (case.mode, case.backend, case.direct) == (FLEET_MODE, FLEET_BACKEND, False):
            return attrs.evolve(case, workers=FLEET_WORKERS, route=args.route)
    return None


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _headline(case: Case) -> str:
    amount = f"{case.requests:,} requests" if case.requests else f"{case.duration:g} s"
    if case.kind == "stream":
        what = f"streams of {case.chunks} x {human_bytes(case.chunk_size)} chunks"
    else:
        what = f"{human_bytes(case.payload)} unary echo"
    return f"requestplane bench: {what}, {amount} per case after {case.warmup:g} s warm-up"


def run(args: argparse.Namespace) -> int:
    registry = installed_transports()
    cases, notes = plan_cases(args, registry)
    for text in notes:
        _note(text)
    if not cases:
        _note("bench: nothing to measure")
        return 1
    bar = ProgressBar(sys.stderr, enabled=not args.json and sys.stderr.isatty(), total=len(cases))

    def on_record(record: dict[str, Any]) -> None:
        if args.json:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()

    def on_note(text: str) -> None:
        bar.clear()
        _note(text)

    async def main() -> RunResult:
        try:
            return await run_cases(
                cases,
                env=os.environ,
                registry=registry,
                bar=bar,
                on_record=on_record,
                on_note=on_note,
            )
        finally:
            bar.clear()

    result = anyio.run(main)
    return _verdict(args, cases, result)


def _verdict(args: argparse.Namespace, cases: list[Case], result: RunResult) -> int:
    status = 0
    for mode, reason in dict((case.mode, reason) for case, reason in result.skipped).items():
        _note(f"{mode}: skipped, it cannot serve ({reason})")
        if args.mode and mode in args.mode:
            status = 1
    if not args.json and result.records:
        per = "stream" if cases[0].kind == "stream" else "request"
        legend = (
            f"cpu us: client + server CPU microseconds per {per}, which machine noise barely moves"
        )
        fleets = format_fleets(result.records)
        table = format_table(result.records) + (f"\n\n{fleets}" if fleets else "")
        sys.stdout.write(f"{_headline(cases[0])}\n\n{table}\n\n{legend}\n")
        sys.stdout.flush()
    for record in result.records:
        if is_clean(record):
            continue
        status = 1
        fleet = f" {record['workers']} workers {record['route']}" if record.get("workers") else ""
        where = (
            f"{record['mode']}/{record['backend']}{fleet} {record['kind']} "
            f"c={record['concurrency']}"
        )
        if record["failure"] is not None:
            _note(f"FAILED {where}: {record['failure']}")
        elif record["errors"]:
            samples = "; ".join(record["error_samples"])
            lost = f", {record['lost']} lost" if record["lost"] else ""
            _note(f"FAILED {where}: {record['errors']} request(s) failed{lost}: {samples}")
        else:
            _note(f"FAILED {where}: no request completed")
    if not result.records:
        _note("bench: nothing was measured")
        status = 1
    return status
