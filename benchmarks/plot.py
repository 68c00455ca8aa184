"""Plot req/s against concurrency per stack, from ``compare.py --scenario sweep --out``.

    python benchmarks/compare.py --scenario sweep --rounds 3 --out sweep.jsonl
    python benchmarks/plot.py sweep.jsonl docs/benchmarks.png

Needs matplotlib (pip install matplotlib), which requestplane itself never imports.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the non-interactive backend


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="JSON lines written by compare.py --out")
    parser.add_argument("output", help="the PNG to write")
    args = parser.parse_args()
    runs: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(args.results) as lines:
        for line in lines:
            record = json.loads(line)
            label = str(record.get("label", ""))
            if record.get("failure") or " c=" not in label:
                continue
            stack = label.rsplit(" c=", 1)[0]
            runs[stack][int(record["concurrency"])].append(float(record["req_per_s"]))
    if not runs:
        sys.stderr.write("no sweep records (labels ending in ' c=N') in the results\n")
        return 1
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    ordered = sorted(
        runs.items(), key=lambda kv: -max(statistics.median(v) for v in kv[1].values())
    )
    # tab20 rather than the default 10-colour cycle: more stacks than that share the plot.
    colors = plt.get_cmap("tab20").colors
    for i, (stack, by_c) in enumerate(ordered):
        xs = sorted(by_c)
        ys = [statistics.median(by_c[c]) for c in xs]
        style = "-" if not stack.startswith(("raw", "nats-py", "grpcio", "httpx")) else "--"
        ax.plot(xs, ys, style, marker="o", label=stack, color=colors[(2 * i) % 20 + (i >= 10)])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted({c for by_c in runs.values() for c in by_c})
    ax.set_xticks(ticks, [str(c) for c in ticks])
    ax.set_xlabel("concurrent requests from one client")
    ax.set_ylabel("requests per second (median, log scale)")
    ax.set_title(
        "1 KiB echo on loopback, server and client in separate processes\n"
        f"(solid: requestplane transports; dashed: peers; {platform.python_version()})",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
