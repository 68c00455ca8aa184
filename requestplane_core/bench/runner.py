"""Run the cases: one server process per transport and loop, one client process per case.

Server and client never share an event loop or a core's worth of interpreter; the parent
only relays progress. Cases that share a server run one after the other against it.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import attrs

from .case import Case
from .nats_server import embedded_nats_server
from .processes import Child, open_child
from .progress import ProgressBar
from .record import failed_record

__all__ = ["RunResult", "run_cases"]

STARTUP_TIMEOUT = 30.0
NATS_URL_VAR = "REQUESTPLANE_NATS_URL"

Record = dict[str, Any]


@attrs.define
class RunResult:
    records: list[Record] = attrs.Factory(list)
    skipped: list[tuple[Case, str]] = attrs.Factory(list)


def worker_argv(role: str, case: Case, *extra: str) -> list[str]:
    return [sys.executable, "-m", "requestplane_core.bench", role, case.to_json(), *extra]


async def run_cases(
    cases: Sequence[Case],
    *,
    env: Mapping[str, str],
    bar: ProgressBar,
    on_record: Callable[[Record], None],
    on_note: Callable[[str], None],
) -> RunResult:
    result = RunResult()
    env = dict(env)
    index = 0
    async with AsyncExitStack() as stack:
        if any(case.mode == "nats" for case in cases) and not env.get(NATS_URL_VAR):
            url = await stack.enter_async_context(embedded_nats_server())
            env[NATS_URL_VAR] = url
            on_note(f"nats: started nats-server at {url} (set {NATS_URL_VAR} to use another)")
        for _, grouped in itertools.groupby(cases, key=lambda case: case.server_key):
            group = list(grouped)
            async with open_child(worker_argv("server", group[0]), env) as server:
                event = await server.next_event(STARTUP_TIMEOUT)
                kind = None if event is None else event.get("event")
                if kind == "unsupported":
                    assert event is not None
                    for case in group:
                        result.skipped.append((case, str(event.get("reason"))))
                    index += len(group)
                    continue
                if kind != "ready":
                    failure = await server.why(f"the {group[0].mode} server did not start")
                    for case in group:
                        record = failed_record(case, failure)
                        result.records.append(record)
                        on_record(record)
                    index += len(group)
                    continue
                assert event is not None
                addresses: dict[str, str] = event["addresses"]
                pid = str(event.get("pid", ""))
                for case in group:
                    index += 1
                    record = await _measure(case, addresses, pid, env, bar, index)
                    if record["failure"] is None and server.process.returncode is not None:
                        record["failure"] = await server.why("the server died")
                    result.records.append(record)
                    on_record(record)
    return result


async def _measure(
    case: Case,
    addresses: dict[str, str],
    server_pid: str,
    env: Mapping[str, str],
    bar: ProgressBar,
    index: int,
) -> Record:
    argv = worker_argv("client", case, json.dumps(addresses), server_pid)
    async with open_child(argv, env) as client:
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
