"""Checks for ``setting(check=...)`` that every transport needs, written once.

Each takes the parsed value (never None: the core skips the check for an unset optional
setting) and says whether it is in range. What a check accepts is said in words by the
setting's own ``accepts=``, so a transport keeps its wording while sharing the check.
"""

from __future__ import annotations

__all__ = ["non_negative", "not_blank", "positive", "positive_finite", "valid_host", "valid_port"]


def valid_port(value: int) -> bool:
    """A TCP/UDP port to bind or dial: 0..65535 (0 lets the OS choose when binding)."""
    return 0 <= value <= 65535


def positive(value: float) -> bool:
    """Greater than 0: sizes, counts and timeouts. Infinity passes (``inf``: no limit)."""
    return value > 0


def positive_finite(value: float) -> bool:
    """Greater than 0 and not infinite, for amounts that must really run out, such as a
    connect timeout."""
    return value > 0 and value != float("inf")


def non_negative(value: float) -> bool:
    """0 or more, where 0 means "none" or "no limit" (a pool size, ``max_inflight``)."""
    return value >= 0


def valid_host(value: str) -> bool:
    """A host name or IP address: not blank, no surrounding white space, no ``/`` (a URL or
    path pasted by mistake)."""
    return bool(value.strip()) and value == value.strip() and "/" not in value


def not_blank(value: str) -> bool:
    """Anything but an empty or all-white-space string."""
    return bool(value.strip())
