"""requestplane's NATS transport (distribution ``requestplane-nats``).

Selected with ``REQUESTPLANE_MODE=nats``; configured with ``REQUESTPLANE_NATS_*``. The one
public helper is :class:`NatsServerProcess`, which runs a real ``nats-server`` on loopback
(tests, demos, the embedded default).
"""

from .nats_server import NatsServerError, NatsServerProcess, find_nats_server
from .settings import NatsSettings

__all__ = ["NatsServerError", "NatsServerProcess", "NatsSettings", "find_nats_server"]
__version__ = "0.1.0"
