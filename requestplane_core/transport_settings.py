"""The settings most transports share, declared in one line each.

::

    @attrs.frozen
    class MySettings:
        host: str = host_setting()
        port: int = port_setting()
        max_message_size: int = max_message_size_setting()
        request_timeout: float | None = request_timeout_setting()

Each factory is :func:`~requestplane_core.settings.setting` with the usual default, help,
wording and check; a transport passes only what it says differently (a larger default, a
note on what its server does with the value). The variable names follow from the field
names as for any setting: ``REQUESTPLANE_<TRANSPORT>_HOST`` and so on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .settings import setting
from .validators import positive, valid_host, valid_port

__all__ = [
    "advertise_host_setting",
    "host_setting",
    "max_message_size_setting",
    "port_setting",
    "request_timeout_setting",
]

_Check = Callable[[Any], bool]


def host_setting(
    default: str = "127.0.0.1",
    *,
    help: str = "interface the server binds; loopback by default, 0.0.0.0 or :: to serve "
    "every interface (an explicit choice)",
    accepts: str = "a host name or IP address",
    check: _Check = valid_host,
) -> Any:
    return setting(default, help=help, accepts=accepts, check=check)


def port_setting(
    default: int = 0,
    *,
    help: str = "TCP port the server binds; 0 lets the OS choose",
    accepts: str = "an integer 0..65535",
    check: _Check = valid_port,
) -> Any:
    return setting(default, help=help, accepts=accepts, check=check)


def advertise_host_setting(
    *,
    help: str = "host put into published addresses (default: the bound host; the machine's "
    "host name when bound to all interfaces)",
    accepts: str = "a host name or IP address, or 'none'",
    check: _Check = valid_host,
) -> Any:
    return setting(None, help=help, accepts=accepts, check=check)


def max_message_size_setting(
    default: int = 32 * 1024 * 1024,
    *,
    help: str = "largest request or response payload in bytes; larger ones are refused with "
    "PayloadTooLarge before sending, and on receipt",
    accepts: str = "an integer > 0",
    check: _Check = positive,
) -> Any:
    return setting(default, help=help, accepts=accepts, check=check)


def request_timeout_setting(
    default: float | None = None,
    *,
    help: str = "seconds a request may take when the caller passes no timeout; it travels to "
    "the server as the handler's deadline; none: no deadline",
    accepts: str = "a number of seconds > 0, or 'none'",
    check: _Check = positive,
) -> Any:
    return setting(default, help=help, accepts=accepts, check=check)
