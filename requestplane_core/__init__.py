"""requestplane: carry requests to named endpoints over a transport chosen by configuration.

This module is the public API, for users and for transport plugins alike. Plugins import
from here only.
"""

from .address import Address
from .clock import loop_clock
from .config import CoreSettings, transport_env_prefix
from .discovery import (
    Added,
    DiscoveryBackend,
    DiscoverySpec,
    Instance,
    InstanceFeed,
    Removed,
    Snapshot,
    Watch,
    WatchEvent,
    instance_from_json,
    instance_to_json,
    validate_name,
)
from .dispatch import Dispatcher
from .errors import (
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    NoInstances,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestPlaneError,
    Unavailable,
    UnknownMode,
    error_from_wire,
)
from .hookspecs import hookimpl
from .instrumentation import RequestEvent
from .manager import RequestPlane, installed_transports, read_core_settings
from .plugins import PluginRegistry, PluginWarning, load_plugins
from .request import Handler, HandlerResult, Request
from .router import InstanceStats, Router
from .server import Health, Server, serve
from .settings import SettingField, describe_settings, load_settings, setting
from .transport import (
    Capabilities,
    ClientStats,
    Dispatch,
    Pending,
    Responder,
    ResponseStream,
    TransportClient,
    TransportServer,
    TransportSpec,
)
from .validators import (
    non_negative,
    not_blank,
    positive,
    positive_finite,
    valid_host,
    valid_port,
)

__all__ = [
    "Added",
    "Address",
    "Capabilities",
    "ClientStats",
    "ConfigError",
    "ConnectionLost",
    "CoreSettings",
    "DeadlineExceeded",
    "DiscoveryBackend",
    "DiscoverySpec",
    "Dispatch",
    "Dispatcher",
    "EndpointNotFound",
    "Handler",
    "HandlerResult",
    "Health",
    "Instance",
    "InstanceFeed",
    "InstanceStats",
    "NoInstances",
    "Overloaded",
    "PayloadTooLarge",
    "Pending",
    "PluginRegistry",
    "PluginWarning",
    "ProtocolError",
    "RemoteError",
    "Removed",
    "Request",
    "RequestEvent",
    "RequestPlane",
    "RequestPlaneError",
    "Responder",
    "ResponseStream",
    "Router",
    "Server",
    "SettingField",
    "Snapshot",
    "TransportClient",
    "TransportServer",
    "TransportSpec",
    "Unavailable",
    "UnknownMode",
    "Watch",
    "WatchEvent",
    "describe_settings",
    "error_from_wire",
    "hookimpl",
    "installed_transports",
    "instance_from_json",
    "instance_to_json",
    "load_plugins",
    "load_settings",
    "loop_clock",
    "non_negative",
    "not_blank",
    "positive",
    "positive_finite",
    "read_core_settings",
    "serve",
    "setting",
    "transport_env_prefix",
    "valid_host",
    "valid_port",
    "validate_name",
]
