"""What the plugin reads from requestplane's request event.

requestplane passes a ``RequestEvent`` (``requestplane_core.plugin_api.RequestEvent``) to
the request hooks. This plugin describes the part of it that it uses instead, which names
what it relies on; any event with these fields will do.
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
