"""Peak resident memory of this process, as the OS counts it."""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss_kib"]


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS counts bytes
