"""Where an endpoint is served: a URL whose scheme names the transport."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

import attrs

from .errors import ConfigError

__all__ = ["Address"]


@attrs.frozen(slots=True)
class Address:
    """``scheme://host:port/path``; ``str()`` and :meth:`parse` round-trip.

    ``path`` is transport-defined (the endpoint name for TCP, root + endpoint for HTTP, a
    subject for NATS) and stored without its leading slash.
    """

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, url: str | Address) -> Address:
        if isinstance(url, Address):
            return url
        parts = urlsplit(url)
        if not parts.scheme or "://" not in url:
            raise ConfigError(f"{url!r} is not an address: expected scheme://host:port/endpoint")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{url!r} is not an address: the port is not 0..65535") from None
        path = unquote(parts.path.lstrip("/"))
        return cls(parts.scheme.lower(), parts.hostname or "", port, path)

    @property
    def endpoint(self) -> str:
        """The last path segment: the endpoint name on transports that route by path."""
        return self.path.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port is None else f"{host}:{self.port}"
        return f"{self.scheme}://{netloc}/{quote(self.path, safe='/')}"
