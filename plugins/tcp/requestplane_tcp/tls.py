"""TLS contexts built from the settings, and TLS failures turned into typed errors."""

from __future__ import annotations

import ssl
from pathlib import Path

from requestplane_core import ConfigError, ProtocolError

from .settings import TcpSettings

__all__ = ["check_tls_settings", "client_context", "server_context", "tls_failure"]

_PREFIX = "REQUESTPLANE_TCP_"


def check_tls_settings(settings: TcpSettings) -> None:
    """TLS file settings without ``tls`` on would be silently ignored: refuse them."""
    if settings.tls:
        return
    given = [
        name
        for name in (
            "tls_cert",
            "tls_key",
            "tls_ca",
            "tls_server_name",
            "tls_client_cert",
            "tls_client_key",
            "tls_client_ca",
        )
        if getattr(settings, name) is not None
    ]
    if given:
        names = ", ".join(_PREFIX + name.upper() for name in given)
        raise ConfigError(f"{names} set but {_PREFIX}TLS is off: turn TLS on or unset them")


def server_context(settings: TcpSettings) -> ssl.SSLContext:
    if settings.tls_cert is None:
        raise ConfigError(
            f"{_PREFIX}TLS is on but {_PREFIX}TLS_CERT is not set: a TLS server needs its "
            "certificate (and key)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, settings.tls_cert, settings.tls_key, "TLS_CERT", "TLS_KEY")
    if settings.tls_client_ca is not None:
        _load_ca(context, settings.tls_client_ca, "TLS_CLIENT_CA")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: TcpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_ca is not None:
        _load_ca(context, settings.tls_ca, "TLS_CA")
    if settings.tls_client_cert is not None:
        _load_chain(
            context,
            settings.tls_client_cert,
            settings.tls_client_key,
            "TLS_CLIENT_CERT",
            "TLS_CLIENT_KEY",
        )
    elif settings.tls_client_key is not None:
        raise ConfigError(f"{_PREFIX}TLS_CLIENT_KEY is set without {_PREFIX}TLS_CLIENT_CERT")
    return context


def _load_chain(
    context: ssl.SSLContext, cert: Path, key: Path | None, cert_var: str, key_var: str
) -> None:
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        # Name the files, never their contents: they hold private keys.
        raise ConfigError(
            f"{_PREFIX}{cert_var}={str(cert)!r} / {_PREFIX}{key_var}="
            f"{str(key) if key else None!r} could not be loaded as a PEM certificate chain "
            f"and private key: {_reason(exc)}"
        ) from None


def _load_ca(context: ssl.SSLContext, cafile: Path, var: str) -> None:
    try:
        context.load_verify_locations(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{_PREFIX}{var}={str(cafile)!r} could not be loaded as PEM CA certificates: "
            f"{_reason(exc)}"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or exc.reason or str(exc)
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def tls_failure(peer: str, exc: BaseException) -> ProtocolError:
    """The typed error a client raises when TLS with ``peer`` fails.

    Trust failures are protocol errors, not lost connections: retrying cannot help until
    someone fixes the certificates or the settings.
    """
    reason = _reason(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProtocolError(
            f"TLS with {peer} failed: this client does not trust the server's certificate "
            f"({reason}); check {_PREFIX}TLS_CA and {_PREFIX}TLS_SERVER_NAME"
        )
    upper = reason.upper()
    if "CERTIFICATE" in upper or "UNKNOWN_CA" in upper or "ACCESS_DENIED" in upper:
        return ProtocolError(
            f"TLS with {peer} failed: the server refused this client's certificate "
            f"({reason}); check {_PREFIX}TLS_CLIENT_CERT and the server's "
            f"{_PREFIX}TLS_CLIENT_CA"
        )
    return ProtocolError(
        f"TLS with {peer} failed ({reason}); is the server speaking TLS "
        f"({_PREFIX}TLS on both sides)?"
    )
