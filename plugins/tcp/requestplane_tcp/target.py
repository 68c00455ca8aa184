"""A tcp address parsed once: which connection it needs, and its endpoint on the wire."""

from __future__ import annotations

from requestplane_core import Address, ConfigError

__all__ = ["Target", "parse_target"]


class Target:
    __slots__ = ("endpoint", "key", "peer")

    def __init__(self, address: Address) -> None:
        self.key: tuple[str, int | None] = (address.host, address.port)
        self.endpoint = address.path.encode()
        host = f"[{address.host}]" if ":" in address.host else address.host
        self.peer = f"{host}:{address.port}"


def parse_target(address: Address | str) -> Target:
    parsed = Address.parse(address)
    if parsed.scheme != "tcp":
        raise ConfigError(f"{str(address)!r} is not a tcp:// address")
    if not parsed.host or parsed.port is None or not parsed.path:
        raise ConfigError(
            f"{str(address)!r} is not a tcp address: expected tcp://host:port/endpoint"
        )
    return Target(parsed)
