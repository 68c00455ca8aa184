"""The core's own settings (``REQUESTPLANE_*``), declared like a transport's."""

from __future__ import annotations

import attrs

from .errors import ConfigError
from .settings import setting
from .validators import non_negative, positive

__all__ = [
    "ENV_PREFIX",
    "ROUTE_MODES",
    "CoreSettings",
    "discovery_env_prefix",
    "parse_labels",
    "transport_env_prefix",
]

ENV_PREFIX = "REQUESTPLANE_"


def transport_env_prefix(mode: str) -> str:
    """``tcp`` -> ``REQUESTPLANE_TCP_``; the prefix of every variable a transport reads."""
    return f"{ENV_PREFIX}{mode.upper().replace('-', '_')}_"


def discovery_env_prefix(backend: str) -> str:
    """``file`` -> ``REQUESTPLANE_DISCOVERY_FILE_``: the variables a discovery backend reads."""
    return f"{ENV_PREFIX}DISCOVERY_{backend.upper().replace('-', '_')}_"


#: How a router picks an instance (``REQUESTPLANE_ROUTE``, ``route=`` per call).
ROUTE_MODES = ("round_robin", "random", "p2c", "least_loaded", "direct", "hash")


def parse_labels(text: str | None, source: str = "REQUESTPLANE_LABELS") -> dict[str, str]:
    """``version=2,zone=a`` -> ``{"version": "2", "zone": "a"}``; ConfigError naming
    ``source`` for anything else."""
    labels: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{source}={text!r} is malformed: expected comma-separated key=value labels"
            )
        labels[key.strip()] = value.strip()
    return labels


def _labels_ok(value: str) -> bool:
    try:
        parse_labels(value)
    except ConfigError:
        return False
    return True


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
    discovery: str = setting(
        "file",
        help="the discovery backend servers publish into and routers watch (see "
        "`requestplane transports`); 'none' turns discovery off",
        accepts="a discovery backend name, or 'none'",
    )
    labels: str | None = setting(
        None,
        help="metadata published with this process's instances, e.g. version=2,zone=a",
        accepts="comma-separated key=value labels",
        check=_labels_ok,
    )
    route: str = setting(
        "round_robin",
        help="how a router picks an instance: " + ", ".join(ROUTE_MODES),
        accepts="one of " + ", ".join(ROUTE_MODES),
        check=lambda value: value in ROUTE_MODES,
    )
    route_retries: int = setting(
        2,
        help="times a router retries a call that failed before reaching a handler, on "
        "another instance, within the call's deadline",
        accepts="an integer >= 0",
        check=non_negative,
    )
    route_inhibit: float = setting(
        5.0,
        help="seconds a router sets aside an instance it could not connect to",
        accepts="a number of seconds >= 0",
        check=non_negative,
    )
