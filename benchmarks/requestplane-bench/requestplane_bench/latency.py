"""Per-request timings kept in a preallocated array, and the percentiles read from them.

The hot loop only stores an integer at an index: no allocation per request, so measuring
costs the measured code almost nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["LatencyRecorder", "percentile"]


class LatencyRecorder:
    """Nanosecond timings in a flat int64 array that doubles when full (rarely)."""

    __slots__ = ("count", "values")

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.values = array("q", bytes(8 * max(capacity, 1)))
        self.count = 0

    def add(self, nanoseconds: int) -> None:
        i = self.count
        if i == len(self.values):
            self.values.extend(array("q", bytes(8 * i)))
        self.values[i] = nanoseconds
        self.count = i + 1

    def sorted(self) -> list[int]:
        return sorted(self.values[: self.count])


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """The nearest-rank percentile (``fraction`` in 0..1) of already sorted values; 0 if none."""
    if not sorted_values:
        return 0
    rank = max(1, -(-int(fraction * 1_000_000) * len(sorted_values) // 1_000_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]
