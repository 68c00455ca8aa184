"""Where the CPU time of a profiled benchmark went, by layer and by function.

From cProfile files (``requestplane bench --profile DIR``)::

    requestplane bench --mode tcp --duration 5 --profile prof/
    python benchmarks/profile_summary.py prof/*.prof

or from py-spy's raw output, sampling the bench's server and client processes (on-CPU
samples only, and no profiler overhead on the measured code: the better numbers)::

    py-spy record --subprocesses --format raw -o tcp.txt -- \
        python -m requestplane_core.cli bench --mode tcp --backend asyncio --duration 4
    python benchmarks/profile_summary.py tcp.txt

Time blocked in the event loop's poll (waiting for the peer) is left out: the shares are of
the CPU the process spent, grouped by where the code lives (the innermost frame).
"""

from __future__ import annotations

import argparse
import pstats
import re
import sys
from collections import defaultdict

IDLE = (
    "method 'poll' of 'select.epoll'",
    "method 'select' of 'select.epoll'",
    "epoll_wait",
    "method 'poll' of 'select",
)

# Leaves that are waiting, not working (the bench server's stdin watcher thread included).
PYSPY_IDLE = (
    "EpollSelector.select",
    "EpollIOManager.get_events",
    "_wait_for_eof",
    "concurrent/futures/thread.py",
    "threading.py",
)

# py-spy sees no native frames: a syscall shows as the Python function that made it.
SYSCALLS = (
    ("_SelectorSocketTransport.write", "socket send (syscall, asyncio)"),
    ("_read_ready__data_received", "socket recv (syscall, asyncio)"),
    ("_SelectorSocketTransport._write_ready", "socket send (syscall, asyncio)"),
    ("EpollIOManager.get_events", "epoll (syscall)"),
)

LAYERS = (
    ("requestplane_bench", "bench load loop"),
    ("requestplane_core", "requestplane core (dispatch, manager)"),
    ("requestplane_tcp", "tcp transport"),
    ("requestplane_http", "http transport"),
    ("requestplane_nats", "nats transport"),
    ("requestplane_uds", "uds transport"),
    ("hypercorn", "hypercorn"),
    ("h2/", "h2 (+ hpack, hyperframe)"),
    ("hpack/", "h2 (+ hpack, hyperframe)"),
    ("hyperframe/", "h2 (+ hpack, hyperframe)"),
    ("priority/", "h2 (+ hpack, hyperframe)"),
    ("h11/", "h11"),
    ("httpx", "httpx/httpcore"),
    ("httpcore", "httpx/httpcore"),
    ("nats/", "nats-py"),
    ("(startup)", "startup (imports)"),
    ("anyio", "anyio"),
    ("trio", "trio"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("_socket.socket", "socket syscalls"),
)


def layer_of(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    for needle, layer in SYSCALLS:
        if name.endswith(needle):
            return layer
    if filename.endswith("trio/_socket.py"):
        return "socket send/recv (syscall, trio)"
    where = f"{filename}:{name}"
    for needle, layer in LAYERS:
        if needle in where:
            return layer
    return "other (builtins, stdlib)"


def summarize(path: str, top: int) -> str:
    stats = pstats.Stats(path)
    entries = stats.stats  # type: ignore[attr-defined]
    busy = {f: v for f, v in entries.items() if not any(i in f"{f[0]}:{f[2]}" for i in IDLE)}
    total = sum(v[2] for v in busy.values()) or 1e-9
    idle = sum(v[2] for f, v in entries.items() if f not in busy)
    layers: dict[str, float] = defaultdict(float)
    for func, value in busy.items():
        layers[layer_of(func)] += value[2]
    lines = [f"== {path}: {total:.2f} s CPU (+ {idle:.2f} s waiting in poll)"]
    for layer, seconds in sorted(layers.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {seconds / total:6.1%}  {layer}")
    lines.append("  top functions (own time):")
    ranked = sorted(busy.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, name), value in ranked:
        short = filename.rsplit("site-packages/", 1)[-1].rsplit("/work/main/", 1)[-1]
        lines.append(f"  {value[2] / total:6.1%}  {name}  ({short}:{line}, {value[1]} calls)")
    return "\n".join(lines)


def _frame_key(frame: str) -> tuple[str, int, str]:
    # py-spy writes "function (path/file.py:line)"
    name, _, where = frame.rpartition(" (")
    filename, _, line = where.rstrip(")").rpartition(":")
    return filename, int(line) if line.isdigit() else 0, name


def _role(process: str) -> str | None:
    """``server tcp`` / ``client raw_asyncio.py`` from py-spy's ``process PID:"cmdline"``."""
    match = re.search(r"(\S+) (server|client) ", process)
    if match is None:
        return None
    what = match.group(1).rsplit("/", 1)[-1]
    if what == "requestplane_bench":
        what = process.split('"mode":"', 1)[-1].split('"', 1)[0]
    return f"{match.group(2)} {what}"


def summarize_pyspy(path: str, top: int) -> str:
    """A py-spy raw (collapsed stacks) file: one summary per bench worker process."""
    own: dict[str, dict[tuple[str, int, str], int]] = defaultdict(lambda: defaultdict(int))
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            roles = [f for f in frames if f.startswith("process ")]
            who = _role(roles[-1] if roles else "")
            if who is None:
                continue  # the parent, which only relays progress
            leaf = frames[-1]
            if leaf.startswith("process ") or any(i in leaf for i in IDLE + PYSPY_IDLE):
                continue  # no Python frame, or blocked: py-spy's idle test misses some
            if any("importlib._bootstrap" in f for f in frames):
                own[who][("(startup)", 0, "imports")] += int(count)
                continue
            own[who][_frame_key(leaf)] += int(count)
    out = []
    for who, funcs in sorted(own.items()):
        total = sum(funcs.values()) or 1
        layers: dict[str, float] = defaultdict(float)
        for func, n in funcs.items():
            layers[layer_of(func)] += n
        out.append(f"== {path}: {who}: {total} on-CPU samples")
        for layer, n in sorted(layers.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n / total:6.1%}  {layer}")
        out.append("  top functions (own samples):")
        for (filename, line, name), n in sorted(funcs.items(), key=lambda kv: -kv[1])[:top]:
            short = filename.rsplit("site-packages/", 1)[-1]
            out.append(f"  {n / total:6.1%}  {name}  ({short}:{line})")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    for path in args.profiles:
        print(
            summarize(path, args.top) if path.endswith(".prof") else summarize_pyspy(path, args.top)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
