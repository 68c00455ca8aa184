"""What a server publishes into discovery: one instance record per endpoint it serves.

A server has one instance id for its lifetime; each endpoint it registers becomes a record
``(name, instance id)`` with the address that reaches this server alone. Records are
withdrawn *before* an endpoint or the server drains, so that callers stop choosing it while
its in-flight requests finish.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup

from .address import Address
from .discovery import DiscoveryBackend, DiscoverySpec, Instance, validate_name

__all__ = ["PublishSettings", "Publisher", "new_instance_id"]

log = logging.getLogger("requestplane")


def new_instance_id() -> str:
    """A random id, unique enough across a fleet (64 bits)."""
    return secrets.token_hex(8)


def _pairs(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dict(value).items()))


@attrs.frozen
class PublishSettings:
    """The discovery backend and labels a server publishes with, as the manager read them.

    Comparable, so that managers sharing one server can be checked to agree on them.
    """

    spec: DiscoverySpec[Any]
    settings: object
    labels: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_pairs)

    def publisher(self, transport: str) -> Publisher:
        return Publisher(self.spec.backend(self.settings), transport, dict(self.labels))


class Publisher:
    """Publishes one server's endpoints through a discovery backend it owns."""

    def __init__(
        self, backend: DiscoveryBackend, transport: str, labels: Mapping[str, str]
    ) -> None:
        self.backend = backend
        self.instance_id = new_instance_id()
        self._transport = transport
        self._labels = dict(labels)
        self._published: dict[str, Instance] = {}

    def start(self, task_group: TaskGroup) -> None:
        self.backend.start(task_group)

    def check(self, name: str) -> None:
        """Refuse a name discovery cannot carry before the endpoint is served."""
        validate_name(name)

    async def publish(self, name: str, address: Address) -> None:
        if self.backend.read_only:
            return
        instance = Instance(
            name=name,
            instance_id=self.instance_id,
            transport=self._transport,
            address=str(address),
            metadata=self._labels,
            registered_at=time.time(),
        )
        await self.backend.register(instance)
        self._published[name] = instance

    async def withdraw(self, name: str) -> None:
        instance = self._published.pop(name, None)
        if instance is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                await self.backend.unregister(instance)
        except Exception as exc:
            # The record then expires on its own (lease, TTL); the server must still drain,
            # whatever the backend raised (a plugin's bug included).
            log.warning(
                "could not withdraw %s (instance %s) from %s: %s",
                name,
                self.instance_id,
                self.backend.describe(),
                exc,
            )

    async def withdraw_all(self) -> None:
        for name in list(self._published):
            await self.withdraw(name)

    @property
    def published(self) -> bool:
        return bool(self._published)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.withdraw_all()
            try:
                await self.backend.aclose()
            except Exception as exc:  # the server is closed all the same
                log.warning("closing %s failed: %s", self.backend.describe(), exc)
