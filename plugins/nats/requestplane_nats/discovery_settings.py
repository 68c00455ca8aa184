"""``REQUESTPLANE_DISCOVERY_NATS_*``: the settings of the ``nats`` discovery backend.

Its own set of variables, not the transport's ``REQUESTPLANE_NATS_*``: the common production
pairing is another transport (TCP) with NATS discovery, and a NATS transport may well use
another server (or another account) than the store of the instance records.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlsplit

import attrs

# The settings declarator as ruff knows it (extend-immutable-calls names this path).
from requestplane_core import positive, setting

from .settings import DEFAULT_URL

__all__ = ["ENV_PREFIX", "NatsDiscoverySettings"]

ENV_PREFIX = "REQUESTPLANE_DISCOVERY_NATS_"

# What JetStream accepts as a bucket name (nats-py's VALID_BUCKET_RE).
_BUCKET = re.compile(r"[A-Za-z0-9_-]{1,200}")


def _valid_urls(value: str) -> bool:
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        return False
    for part in parts:
        try:
            url = urlsplit(part)
            url.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            return False
        if url.scheme not in ("nats", "tls") or not url.hostname:
            return False
    return True


def _ttl_ok(value: float) -> bool:
    return 1.0 <= value <= 86400.0


def _storage_ok(value: str) -> bool:
    return value in ("memory", "file")


def _replicas_ok(value: int) -> bool:
    return 1 <= value <= 5


@attrs.frozen
class NatsDiscoverySettings:
    url: str = setting(
        DEFAULT_URL,
        help="NATS server URL(s) of the JetStream-enabled server (nats-server -js) that holds "
        "the instance records, comma-separated",
        accepts="nats://host:port or tls://host:port, comma-separated",
        check=_valid_urls,
    )
    bucket: str = setting(
        "requestplane-discovery",
        help="JetStream key-value bucket of the instance records (created when missing); "
        "everyone who should find each other uses the same one",
        accepts="1-200 letters, digits, '_' and '-'",
        check=lambda value: bool(_BUCKET.fullmatch(value)),
    )
    ttl: float = setting(
        10.0,
        help="seconds a record stays live without a heartbeat (heartbeats every ttl/3); "
        "NATS counts whole seconds, so it is rounded up",
        accepts="a number of seconds from 1 to 86400",
        check=_ttl_ok,
    )
    storage: str = setting(
        "memory",
        help="JetStream storage of a bucket this backend creates: 'memory' (records are "
        "re-asserted by their owners after a store restart anyway) or 'file'",
        accepts="'memory' or 'file'",
        check=_storage_ok,
    )
    replicas: int = setting(
        1,
        help="replicas of a bucket this backend creates (a JetStream cluster: 3)",
        accepts="an integer from 1 to 5",
        check=_replicas_ok,
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
    connect_timeout: float = setting(
        5.0,
        help="seconds to connect to the NATS server, and to wait for one JetStream answer",
        accepts="a number of seconds > 0",
        check=positive,
    )
    reconnect_wait: float = setting(
        0.5,
        help="seconds between reconnect attempts (it reconnects for ever)",
        accepts="a number of seconds > 0",
        check=positive,
    )

    def urls(self) -> list[str]:
        return [p.strip() for p in self.url.split(",")]

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca or self.tls_cert) or any(
            u.startswith("tls://") for u in self.urls()
        )

    @property
    def ttl_seconds(self) -> int:
        """The TTL NATS applies: per-message TTLs are whole seconds."""
        return math.ceil(self.ttl)
