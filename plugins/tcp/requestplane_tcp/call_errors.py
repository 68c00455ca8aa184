"""The errors a call can end with, as factories: each caller raises a fresh copy.

One exception object raised in many tasks (every call on a connection that broke) would
share, and keep growing, one traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from requestplane_core import ConnectionLost, PayloadTooLarge, RequestPlaneError

__all__ = [
    "ErrorFactory",
    "closed_error",
    "copier",
    "lost",
    "response_too_large",
    "too_large_factory",
]

ErrorFactory = Callable[[], RequestPlaneError]


def copier(error: RequestPlaneError) -> ErrorFactory:
    def make() -> RequestPlaneError:
        return copy.copy(error)

    return make


def closed_error() -> RequestPlaneError:
    return ConnectionLost("the tcp client was closed")


def lost(peer: str, exc: BaseException | None) -> ErrorFactory:
    why = "closed the connection" if exc is None else f"connection broke ({exc!r})"
    return lambda: ConnectionLost(f"{peer}: {why}")


def too_large_factory(size: int, limit: int) -> ErrorFactory:
    return lambda: response_too_large(size, limit, "response")


def response_too_large(size: int, limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"the {what} of {size} bytes is over this client's limit of {limit}")
