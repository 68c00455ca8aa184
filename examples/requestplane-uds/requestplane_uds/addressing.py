"""Addresses: ``uds://localhost/<socket path>/<endpoint>``.

The socket path is absolute and travels URL-quoted in the address's path, followed by the
endpoint name (which cannot contain ``/``), so :class:`requestplane_core.Address` round-trips
it unchanged: ``uds://localhost/tmp/requestplane-uds-k2j1/server.sock/echo``.
"""

from __future__ import annotations

from pathlib import PurePath

import attrs

from requestplane_core import Address, ConfigError

__all__ = ["SCHEME", "Target", "address_for", "parse_target"]

SCHEME = "uds"
_HOST = "localhost"


@attrs.frozen
class Target:
    """Where a client connects, and which endpoint it asks for."""

    socket_path: str
    endpoint: str


def address_for(socket_path: PurePath, endpoint: str) -> Address:
    if not socket_path.is_absolute():
        raise ValueError(f"the socket path {socket_path} must be absolute")
    # An endpoint name of several segments (llm/decode/generate) is set off from the socket
    # path by an empty segment, which no socket path contains: path//llm/decode/generate.
    sep = "//" if "/" in endpoint else "/"
    return Address(SCHEME, _HOST, None, f"{str(socket_path).lstrip('/')}{sep}{endpoint}")


def parse_target(address: Address | str) -> Target:
    parsed = Address.parse(address)
    if parsed.scheme != SCHEME:
        raise ConfigError(f"{str(parsed)!r} is not a {SCHEME}:// address")
    if parsed.host not in ("", _HOST) or parsed.port is not None:
        raise ConfigError(
            f"{str(parsed)!r}: Unix sockets are local; the host must be {_HOST!r}, without port"
        )
    socket_path, sep, endpoint = parsed.path.partition("//")
    if not sep:
        socket_path, sep, endpoint = parsed.path.rpartition("/")
    if not sep or not socket_path or not endpoint:
        raise ConfigError(
            f"{str(parsed)!r} is not a {SCHEME} address: expected "
            f"{SCHEME}://{_HOST}/<socket path>/<endpoint>"
        )
    return Target("/" + socket_path, endpoint)
