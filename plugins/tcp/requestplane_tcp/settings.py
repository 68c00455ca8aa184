"""The TCP transport's settings, read by the core from ``REQUESTPLANE_TCP_*``."""

from __future__ import annotations

from pathlib import Path

import attrs

from requestplane_core import not_blank, positive_finite, setting
from requestplane_core.plugin_api import (
    advertise_host_setting,
    host_setting,
    max_message_size_setting,
    port_setting,
    request_timeout_setting,
)

__all__ = ["MAX_MESSAGE_SIZE_LIMIT", "TcpSettings"]

# The frame length field is 32 bits and a frame carries up to 64 KiB of metadata besides the
# payload; keeping the payload limit this far below 4 GiB leaves room for both.
MAX_MESSAGE_SIZE_LIMIT = 2**32 - 2**20


def _message_size(value: int) -> bool:
    return 1 <= value <= MAX_MESSAGE_SIZE_LIMIT


@attrs.frozen
class TcpSettings:
    host: str = host_setting(accepts="an IP address or host name", check=not_blank)
    port: int = port_setting()
    advertise_host: str | None = advertise_host_setting(
        help="host put into the addresses the server publishes; none: the bind host, or for "
        "a wildcard bind (0.0.0.0, ::) the address this machine's hostname resolves to "
        "(127.0.0.1 / ::1 if it does not resolve)",
        accepts="an IP address or host name, or 'none'",
        check=not_blank,
    )
    max_message_size: int = max_message_size_setting(
        accepts=f"an integer 1..{MAX_MESSAGE_SIZE_LIMIT}", check=_message_size
    )
    connect_timeout: float = setting(
        10.0,
        help="seconds to set up a connection (TCP connect, TLS and protocol handshake), for "
        "clients connecting and for the server waiting on a new connection's handshake",
        accepts="a number of seconds > 0",
        check=positive_finite,
    )
    request_timeout: float | None = request_timeout_setting(check=positive_finite)
    idle_timeout: float | None = setting(
        75.0,
        help="seconds the server keeps a connection open with nothing in flight (no handler "
        "running, nothing left to send) and no bytes arriving; then it closes it, so idle "
        "and stalled peers cannot hold its file descriptors forever (75: HTTP's keep-alive "
        "default); none: never",
        accepts="a number of seconds > 0, or 'none'",
        check=positive_finite,
    )
    frame_timeout: float | None = setting(
        60.0,
        help="seconds a frame the server has begun to receive may take to arrive whole, even "
        "while requests are in flight; a peer that stalls (or trickles) in the middle of a "
        "frame is then told why and disconnected; likewise a peer that reads nothing of what "
        "the server sends it for this long is disconnected; none: no bound",
        accepts="a number of seconds > 0, or 'none'",
        check=positive_finite,
    )
    tls: bool = setting(
        False,
        help="speak TLS: the server needs tls_cert (and tls_key); clients verify the server "
        "against tls_ca",
    )
    tls_cert: Path | None = setting(
        None,
        help="the server's certificate chain (PEM); may also hold its key",
        accepts="a file path, or 'none'",
    )
    tls_key: Path | None = setting(
        None,
        help="the server's private key (PEM), if not in tls_cert",
        accepts="a file path, or 'none'",
    )
    tls_ca: Path | None = setting(
        None,
        help="CA certificates (PEM) clients trust for servers; none: the system trust store",
        accepts="a file path, or 'none'",
    )
    tls_server_name: str | None = setting(
        None,
        help="name clients expect in server certificates; none: the address's host",
        accepts="a host name, or 'none'",
        check=not_blank,
    )
    tls_client_cert: Path | None = setting(
        None,
        help="certificate chain (PEM) clients present for mutual TLS; may also hold the key",
        accepts="a file path, or 'none'",
    )
    tls_client_key: Path | None = setting(
        None,
        help="private key (PEM) of tls_client_cert, if not in that file",
        accepts="a file path, or 'none'",
    )
    tls_client_ca: Path | None = setting(
        None,
        help="CA certificates (PEM) the server verifies client certificates against; setting "
        "it turns on mutual TLS (clients without such a certificate are refused)",
        accepts="a file path, or 'none'",
    )
