"""The core's own settings (``REQUESTPLANE_*``), declared like a transport's."""

from __future__ import annotations

import attrs

from .settings import setting
from .validators import non_negative, positive

__all__ = ["ENV_PREFIX", "CoreSettings", "transport_env_prefix"]

ENV_PREFIX = "REQUESTPLANE_"


def transport_env_prefix(mode: str) -> str:
    """``tcp`` -> ``REQUESTPLANE_TCP_``; the prefix of every variable a transport reads."""
    return f"{ENV_PREFIX}{mode.upper().replace('-', '_')}_"


@attrs.frozen
class CoreSettings:
    mode: str = setting(
        "tcp",
        help="the transport to use (see `requestplane transports`)",
        accepts="a transport name",
    )
    drain_timeout: float = setting(
        10.0,
        help="seconds in-flight requests get to finish when a server closes or an endpoint is "
        "unregistered; the rest are cancelled",
        accepts="a number of seconds > 0",
        check=positive,
    )
    max_inflight: int = setting(
        0,
        help="requests a server runs at once; more are refused at once with Overloaded "
        "(0: no limit)",
        accepts="an integer >= 0",
        check=non_negative,
    )
    plugins: str | None = setting(
        None,
        help="comma-separated allow-list of plugins (entry point names or importable modules)",
        accepts="comma-separated names",
    )
    disable_plugins: str | None = setting(
        None, help="comma-separated plugins not to load", accepts="comma-separated names"
    )
    strict_plugins: bool = setting(
        False, help="a plugin that fails to load is an error instead of a warning"
    )
