"""The calling half: every call opens its own connection, in the caller's own task.

``request()``, ``stream()``, the counters, deadlines, the size check and the closed state
come from :class:`~requestplane_core.plugin_api.ExchangeClient`; this transport says how to
read an address and how to open one call (:class:`~requestplane_uds.call.Call`).
"""

from __future__ import annotations

from collections.abc import Mapping

from requestplane_core import Address
from requestplane_core.plugin_api import ExchangeClient

from .addressing import Target, parse_target
from .call import Call
from .settings import UdsSettings

__all__ = ["UdsClient"]


class UdsClient(ExchangeClient[Target]):
    def __init__(self, settings: UdsSettings) -> None:
        super().__init__(
            name="uds",
            max_message_size=settings.max_message_size,
            request_timeout=settings.request_timeout,
        )

    def parse_target(self, address: Address | str) -> Target:
        return parse_target(address)

    def peer_of(self, target: Target) -> str:
        return repr(target.endpoint)

    async def open_exchange(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> Call:
        return await Call.open(
            target,
            payload,
            headers,
            deadline,
            stats=self.stats,
            max_message_size=self.max_message_size,
        )
