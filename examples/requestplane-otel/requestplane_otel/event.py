"""What the plugin reads from requestplane's request event.

requestplane passes a ``RequestEvent`` to the request hooks, but does not export that class
from ``requestplane_core`` (only from an internal module). A plugin that imports only the
public API describes the part it uses instead; any event with these fields will do.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ObservedRequest"]


class ObservedRequest(Protocol):
    side: str
    transport: str
    endpoint: str
    headers: dict[str, str]
    address: str | None
    stream: bool
    bytes_in: int
    bytes_out: int
    chunks: int
    outcome: str
    scratch: dict[str, Any]
