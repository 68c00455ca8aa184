"""TLS and mutual TLS from the settings, for hypercorn and for the client."""

from __future__ import annotations

import ssl
from typing import Any

from requestplane_core import ConfigError

from .settings import HttpSettings

__all__ = ["client_context", "server_config"]


def server_config(config: Any, settings: HttpSettings) -> None:
    """Put the server's TLS settings on a hypercorn ``Config`` and check they load."""
    config.certfile = str(settings.tls_cert_file)
    config.keyfile = str(settings.tls_key_file)
    if settings.tls_client_ca_file is not None:
        config.ca_certs = str(settings.tls_client_ca_file)
        config.verify_mode = (
            ssl.CERT_REQUIRED if settings.tls_require_client_cert else ssl.CERT_OPTIONAL
        )
    try:
        config.create_ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"the HTTP server's TLS files do not load (REQUESTPLANE_HTTP_TLS_CERT_FILE="
            f"{settings.tls_cert_file}, REQUESTPLANE_HTTP_TLS_KEY_FILE={settings.tls_key_file}, "
            f"REQUESTPLANE_HTTP_TLS_CLIENT_CA_FILE={settings.tls_client_ca_file}): {exc}"
        ) from None


def client_context(settings: HttpSettings, alpn: str) -> ssl.SSLContext:
    """The client's context for one ALPN protocol (``h2`` or ``http/1.1``)."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file is not None else None
        )
        if settings.tls_client_cert_file is not None:
            context.load_cert_chain(
                str(settings.tls_client_cert_file), str(settings.tls_client_key_file)
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"the HTTP client's TLS files do not load (REQUESTPLANE_HTTP_TLS_CA_FILE="
            f"{settings.tls_ca_file}, REQUESTPLANE_HTTP_TLS_CLIENT_CERT_FILE="
            f"{settings.tls_client_cert_file}): {exc}"
        ) from None
    context.set_alpn_protocols([alpn])
    return context
