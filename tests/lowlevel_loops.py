"""The event loops the low-level fast paths are tested on: asyncio, trio, and uvloop (whose
futures, tasks and timers are C implementations of their own) when it is installed."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

LOOPS: list[Any] = ["asyncio", "trio"]
if importlib.util.find_spec("uvloop") is not None:
    LOOPS.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


def loop_name(anyio_backend: Any) -> str:
    """``asyncio``, ``trio`` or ``uvloop``."""
    if isinstance(anyio_backend, tuple):
        return "uvloop" if anyio_backend[1].get("use_uvloop") else anyio_backend[0]
    return str(anyio_backend)
