"""An HTTP address parsed once: which pool it needs, and its request line and headers."""

from __future__ import annotations

from urllib.parse import quote

from requestplane_core import Address, ConfigError

__all__ = ["Target"]


class Target:
    __slots__ = ("authority", "h2_headers", "origin", "path", "pool_key", "text")

    def __init__(self, address: Address | str) -> None:
        parsed = Address.parse(address)
        if parsed.scheme not in ("http", "https"):
            raise ConfigError(
                f"{address!s} is not an HTTP transport address (http://host:port/path)"
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        self.text = str(parsed)
        self.pool_key = (parsed.scheme, parsed.host, port)
        self.origin = f"{host}:{port}"
        self.authority = self.origin.encode("ascii")
        self.path = ("/" + quote(parsed.path, safe="/")).encode("ascii")
        self.h2_headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", parsed.scheme.encode()),
            (b":authority", self.authority),
            (b":path", self.path),
        ]
