"""Run the cases: one server process per transport and loop, one client process per case.

Server and client never share an event loop or a core's worth of interpreter; the parent
only relays progress. Cases that share a server run one after the other against it. A
fleet case starts ``workers`` server processes instead, each its own instance in a
temporary file-discovery directory, and the client routes across them.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs

from requestplane_core.plugin_api import PluginRegistry

from .brokers import embedded_brokers
from .case import Case
from .processes import Child, open_child
from .progress import ProgressBar
from .record import failed_record

__all__ = ["RunResult", "run_cases"]

STARTUP_TIMEOUT = 30.0
DISCOVERY_VAR = "REQUESTPLANE_DISCOVERY"
DISCOVERY_DIR_VAR = "REQUESTPLANE_DISCOVERY_FILE_DIR"

Record = dict[str, Any]


@attrs.define
class RunResult:
    records: list[Record] = attrs.Factory(list)
    skipped: list[tuple[Case, str]] = attrs.Factory(list)


def worker_argv(role: str, case: Case, *extra: str) -> list[str]:
    return [sys.executable, "-m", "requestplane_bench", role, case.to_json(), *extra]


async def run_cases(
    cases: Sequence[Case],
    *,
    env: Mapping[str, str],
    registry: PluginRegistry,
    bar: ProgressBar,
    on_record: Callable[[Record], None],
    on_note: Callable[[str], None],
) -> RunResult:
    result = RunResult()
    index = 0
    async with embedded_brokers(registry, (case.mode for case in cases), env, on_note) as env:
        for _, grouped in itertools.groupby(cases, key=lambda case: case.server_key):
            group = list(grouped)
            async with _servers(group[0], env) as servers:
                if servers.unsupported is not None:
                    for case in group:
                        result.skipped.append((case, servers.unsupported))
                    index += len(group)
                    continue
                if servers.failure is not None:
                    for case in group:
                        record = failed_record(case, servers.failure)
                        result.records.append(record)
                        on_record(record)
                    index += len(group)
                    continue
                for case in group:
                    index += 1
                    record = await _measure(case, servers, bar, index)
                    for server in servers.children:
                        if record["failure"] is None and server.process.returncode is not None:
                            record["failure"] = await server.why("a server died")
                    result.records.append(record)
                    on_record(record)
    return result


@attrs.frozen
class _Servers:
    """A case's server processes (one, or a fleet's workers) once they said they are up."""

    children: list[Child]
    env: dict[str, str]  # the client's too: a fleet's discovery directory is in it
    addresses: dict[str, str] = attrs.Factory(dict)  # of the first server
    pids: list[str] = attrs.Factory(list)
    unsupported: str | None = None
    failure: str | None = None


@asynccontextmanager
async def _servers(case: Case, env: Mapping[str, str]) -> AsyncIterator[_Servers]:
    async with AsyncExitStack() as stack:
        env = dict(env)
        if case.workers:
            # A directory of the run's own: the client sees exactly these workers, and no
            # other benchmark's or server's instances of the same endpoint names.
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="rp-bench-"))
            env.update({DISCOVERY_VAR: "file", DISCOVERY_DIR_VAR: directory})
        children = [
            await stack.enter_async_context(open_child(worker_argv("server", case), env))
            for _ in range(max(case.workers, 1))
        ]
        addresses: dict[str, str] = {}
        pids: list[str] = []
        for number, child in enumerate(children, 1):
            event = await child.next_event(STARTUP_TIMEOUT)
            kind = None if event is None else event.get("event")
            if event is not None and kind == "unsupported":
                yield _Servers(children, env, unsupported=str(event.get("reason")))
                return
            if event is None or kind != "ready":
                which = f"worker {number} of {len(children)}" if case.workers else "server"
                failure = await child.why(f"the {case.mode} {which} did not start")
                yield _Servers(children, env, failure=failure)
                return
            addresses = addresses or event["addresses"]
            pids.append(str(event.get("pid", "")))
        yield _Servers(children, env, addresses, pids)


async def _measure(case: Case, servers: _Servers, bar: ProgressBar, index: int) -> Record:
    argv = worker_argv("client", case, json.dumps(servers.addresses), ",".join(servers.pids))
    async with open_child(argv, servers.env) as client:
        measuring_since: float | None = None
        bar.show(index, case.label, 0.0, "starting")
        while True:
            # Progress arrives every 0.2 s; silence this long means the client is stuck.
            event = await client.next_event(case.stall_timeout + STARTUP_TIMEOUT)
            if event is None:
                return failed_record(case, await _lost(client))
            if event.get("event") == "result":
                record: Record = event["record"]
                return record
            if event.get("event") == "progress":
                phase, done = str(event.get("phase")), int(event.get("done", 0))
                if phase == "measure" and measuring_since is None:
                    measuring_since = time.monotonic() - 0.2
                bar.show(
                    index, case.label, _fraction(case, measuring_since, done), f"{phase} {done:,}"
                )


def _fraction(case: Case, measuring_since: float | None, done: int) -> float:
    if measuring_since is None:
        return 0.0
    if case.requests is not None:
        return done / max(case.requests, 1)
    return (time.monotonic() - measuring_since) / (case.duration or 1.0)


async def _lost(client: Child) -> str:
    return await client.why("the client process ended without a result")
