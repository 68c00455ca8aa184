"""Every reach into the private parts of nats-py, the NATS transport's one dependency with any.

What is reached, tested with nats-py 2.16.0 (pinned to its series in pyproject.toml):

- ``Client._send_unsubscribe``, ``Client._remove_sub`` and ``Subscription``'s ``_id``,
  ``_pending_queue``, ``_stop_processing``, ``_closed``: retiring a subscription without
  losing a request (:func:`retire_subscription`; nats-py's own ``drain()`` is that, minus a
  race, see ``NatsLink.unsubscribe``). Without them, ``drain()`` is used.
- ``Client._server_info``: whether the server asked for TLS (:func:`server_uses_tls`);
  nats-py upgrades only when asked and says so nowhere public. Without it, the answer is
  "no", and a client that wants TLS refuses the connection as it does for a server that
  does not offer TLS.

:func:`missing_private_reaches` lists what the installed nats-py lacks;
``tests/test_nats_compat.py`` fails on any of it, so that an upgrade fails loudly in the
tests rather than silently losing requests at unregistration.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription

__all__ = [
    "SUBSCRIPTION_INTERNALS",
    "missing_private_reaches",
    "retire_subscription",
    "server_uses_tls",
]

_CLIENT_METHODS = ("_send_unsubscribe", "_remove_sub")
_SUBSCRIPTION_METHODS = ("_stop_processing",)
_SUBSCRIPTION_ATTRIBUTES = ("_id", "_pending_queue", "_closed")

SUBSCRIPTION_INTERNALS = all(hasattr(Subscription, name) for name in _SUBSCRIPTION_METHODS) and all(
    hasattr(Client, name) for name in _CLIENT_METHODS
)
"""Whether :func:`retire_subscription` can do better than nats-py's ``drain()``."""


async def retire_subscription(nc: Client, sub: Subscription, linger: float, timeout: float) -> None:
    """Unsubscribe ``sub``, keep delivering for ``linger`` seconds after the server confirmed
    it, and hand on every message queued by then. nats-py's errors pass through."""
    if not SUBSCRIPTION_INTERNALS:
        await asyncio.wait_for(sub.drain(), timeout)  # type: ignore[no-untyped-call]
        return
    await nc._send_unsubscribe(sub._id)
    await nc.flush(timeout=timeout)  # type: ignore[arg-type]
    await asyncio.sleep(linger)
    await asyncio.wait_for(sub._pending_queue.join(), timeout)
    sub._stop_processing()
    nc._remove_sub(sub._id)
    sub._closed = True


def server_uses_tls(nc: Client) -> bool:
    """Whether the server ``nc`` is connected to asked for TLS (its INFO's
    ``tls_required``, which nats-py keeps in ``_server_info``)."""
    info = getattr(nc, "_server_info", None)
    return bool(isinstance(info, dict) and info.get("tls_required"))


def missing_private_reaches() -> list[str]:
    """What the reaches of this module look for and the installed nats-py lacks."""
    missing = [f"Client.{name}" for name in _CLIENT_METHODS if not hasattr(Client, name)]
    missing += [
        f"Subscription.{name}" for name in _SUBSCRIPTION_METHODS if not hasattr(Subscription, name)
    ]
    # Instance attributes, set in __init__, so looked for in its source.
    init = _source(Subscription.__init__)
    missing += [
        f"Subscription().{name}" for name in _SUBSCRIPTION_ATTRIBUTES if f"self.{name}" not in init
    ]
    if "self._server_info" not in _source(Client):
        missing.append("Client()._server_info")
    return missing


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""
