"""Servers coming and going: a log line and the ``requestplane.servers`` up-down counter."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .providers import current

__all__ = ["server_started", "server_stopped"]

log = logging.getLogger("requestplane.otel")


def server_started(transport: str, details: Mapping[str, Any]) -> None:
    log.info("requestplane %s server started: %s", transport, dict(details))
    current().servers.add(1, {"requestplane.transport": transport})


def server_stopped(transport: str) -> None:
    log.info("requestplane %s server stopped", transport)
    current().servers.add(-1, {"requestplane.transport": transport})
