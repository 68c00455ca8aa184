"""Worker processes of ``requestplane bench`` (internal)::

python -m requestplane_bench server CASE_JSON
python -m requestplane_bench client CASE_JSON ADDRESSES_JSON SERVER_PIDS

SERVER_PIDS: the server's pid, or a fleet's pids joined by commas (their CPU is measured).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from .case import Case
from .client_worker import measure_case
from .server_worker import serve_case


def _run(role: str, case: Case, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    options = {"use_uvloop": True} if case.uvloop else {}
    if case.profile is None:
        anyio.run(fn, *args, backend=case.backend, backend_options=options)
        return
    import cProfile

    name = f"{role}-{case.mode}-{case.loop}" + ("" if role == "server" else f"-{case.kind}")
    with cProfile.Profile() as profile:
        anyio.run(fn, *args, backend=case.backend, backend_options=options)
    profile.dump_stats(str(Path(case.profile) / f"{name}.prof"))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "server":
        case = Case.from_json(argv[1])
        _run("server", case, serve_case, case)
        return 0
    if len(argv) == 4 and argv[0] == "client":
        case = Case.from_json(argv[1])
        pids = [int(pid) for pid in argv[3].split(",") if pid.isdigit()]
        _run("client", case, measure_case, case, json.loads(argv[2]), pids)
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
