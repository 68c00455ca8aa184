"""The HTTP transport's settings; the core reads them from ``REQUESTPLANE_HTTP_*``."""

from __future__ import annotations

from pathlib import Path

import attrs

from requestplane_core import (
    ConfigError,
    non_negative,
    positive,
    setting,
)
from requestplane_core.plugin_api import (
    advertise_host_setting,
    host_setting,
    max_message_size_setting,
    port_setting,
    request_timeout_setting,
)

__all__ = ["HttpSettings"]


def _pem_file(value: Path) -> bool:
    return value.is_file()


_PEM = "a path to an existing PEM file, or 'none'"


def _root_path(value: str) -> bool:
    if not value.startswith("/") or (value != "/" and value.endswith("/")):
        return False
    return not any(c.isspace() or c in "?#%" for c in value)


@attrs.frozen
class HttpSettings:
    host: str = host_setting()
    port: int = port_setting()
    advertise_host: str | None = advertise_host_setting()
    root_path: str = setting(
        "/v1/rpc",
        help="URL path under which endpoints are served: POST {root_path}/{endpoint}",
        accepts="an absolute URL path without a trailing slash, e.g. /v1/rpc",
        check=_root_path,
    )
    max_message_size: int = max_message_size_setting(accepts="an integer > 0 (bytes)")
    connect_timeout: float = setting(
        10.0,
        help="seconds the client waits to connect: TCP, TLS, and the server's HTTP/2 settings",
        accepts="a number of seconds > 0",
        check=positive,
    )
    request_timeout: float | None = request_timeout_setting()
    http1_threshold: int = setting(
        16 * 1024,
        help="request payloads of at least this many bytes go over HTTP/1.1 instead of "
        "multiplexed HTTP/2: against hypercorn (fixed 64 KiB HTTP/2 receive window, a window "
        "update every 32 KiB) HTTP/1.1 is faster from about 16 KiB, and 5-7x at 1-8 MiB",
        accepts="an integer > 0 (bytes)",
        check=positive,
    )
    http1_pool_size: int = setting(
        32,
        help="idle HTTP/1.1 connections the client keeps per server for the next large "
        "request; more large requests at once open more connections, closed after use",
        accepts="an integer >= 0",
        check=non_negative,
    )
    max_connections: int = setting(
        8,
        help="HTTP/2 connections the client opens to one server at most; it opens another "
        "only when every open one is at the server's concurrent stream limit",
        accepts="an integer > 0",
        check=positive,
    )
    max_concurrent_streams: int = setting(
        1000,
        help="requests one HTTP/2 connection may carry at once (server side)",
        accepts="an integer > 0",
        check=positive,
    )
    max_resets_per_second: float = setting(
        100.0,
        help="HTTP/2 streams a client may reset per second on one connection, on top of "
        "max_concurrent_streams at once; past that the server sends GOAWAY "
        "(ENHANCE_YOUR_CALM) and closes the connection: the bound on 'rapid reset' floods "
        "(server side; inf: no limit)",
        accepts="a number > 0, or inf",
        check=positive,
    )
    keep_alive_timeout: float = setting(
        75.0,
        help="seconds the server keeps an idle connection open",
        accepts="a number of seconds > 0",
        check=positive,
    )
    idle_timeout: float = setting(
        60.0,
        help="seconds the client keeps an idle connection before closing it; keep it below "
        "the server's keep_alive_timeout so the client, not the server, closes idle "
        "connections (no request races a server-side close)",
        accepts="a number of seconds > 0",
        check=positive,
    )
    tls_cert_file: Path | None = setting(
        None,
        help="server: PEM certificate chain; with tls_key_file it turns on TLS (https:// "
        "addresses)",
        accepts=_PEM,
        check=_pem_file,
    )
    tls_key_file: Path | None = setting(
        None, help="server: PEM private key of tls_cert_file", accepts=_PEM, check=_pem_file
    )
    tls_client_ca_file: Path | None = setting(
        None,
        help="server: PEM CA bundle that client certificates are verified against",
        accepts=_PEM,
        check=_pem_file,
    )
    tls_require_client_cert: bool = setting(
        False,
        help="server: refuse clients without a certificate signed by tls_client_ca_file "
        "(mutual TLS)",
    )
    tls_ca_file: Path | None = setting(
        None,
        help="client: PEM CA bundle that server certificates are verified against (default: "
        "the system's trust store)",
        accepts=_PEM,
        check=_pem_file,
    )
    tls_client_cert_file: Path | None = setting(
        None,
        help="client: PEM certificate chain presented to servers that ask for one",
        accepts=_PEM,
        check=_pem_file,
    )
    tls_client_key_file: Path | None = setting(
        None, help="client: PEM private key of tls_client_cert_file", accepts=_PEM, check=_pem_file
    )

    def __attrs_post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                "REQUESTPLANE_HTTP_TLS_CERT_FILE and REQUESTPLANE_HTTP_TLS_KEY_FILE go together: "
                "set both or neither"
            )
        if self.tls_require_client_cert and self.tls_client_ca_file is None:
            raise ConfigError(
                "REQUESTPLANE_HTTP_TLS_REQUIRE_CLIENT_CERT needs "
                "REQUESTPLANE_HTTP_TLS_CLIENT_CA_FILE (the CA client certificates must chain to)"
            )
        if (self.tls_client_cert_file is None) != (self.tls_client_key_file is None):
            raise ConfigError(
                "REQUESTPLANE_HTTP_TLS_CLIENT_CERT_FILE and REQUESTPLANE_HTTP_TLS_CLIENT_KEY_FILE "
                "go together: set both or neither"
            )

    @property
    def tls(self) -> bool:
        """Whether the server serves TLS (and publishes https:// addresses)."""
        return self.tls_cert_file is not None
