"""Where the CPU time of a profiled benchmark went, by layer and by function.

    requestplane bench --mode tcp --duration 5 --profile prof/
    python benchmarks/profile_summary.py prof/*.prof

Time blocked in the event loop's poll (waiting for the peer) is left out: the shares are of
the CPU the process spent, grouped by where the code lives.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import defaultdict

IDLE = (
    "method 'poll' of 'select.epoll'",
    "method 'select' of 'select.epoll'",
    "epoll_wait",
    "method 'poll' of 'select",
)

LAYERS = (
    ("requestplane_core/bench", "bench load loop"),
    ("requestplane_core", "requestplane core (dispatch, manager)"),
    ("requestplane_tcp", "tcp transport"),
    ("requestplane_http", "http transport"),
    ("requestplane_nats", "nats transport"),
    ("requestplane_uds", "uds transport"),
    ("hypercorn", "hypercorn"),
    ("/h2/", "h2"),
    ("/h11/", "h11"),
    ("httpx", "httpx/httpcore"),
    ("httpcore", "httpx/httpcore"),
    ("/nats/", "nats-py"),
    ("anyio", "anyio"),
    ("trio", "trio"),
    ("asyncio", "asyncio"),
    ("uvloop", "uvloop"),
    ("_socket.socket", "socket syscalls"),
)


def layer_of(func: tuple[str, int, str]) -> str:
    filename, _, name = func
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    for path in args.profiles:
        print(summarize(path, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
