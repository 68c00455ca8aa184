"""requestplane: carry requests to named endpoints over a transport chosen by configuration.

This module is the application's face: the manager, requests and handlers, servers, routers,
discovery records, addresses and the errors. What a plugin author implements and uses (the
transport and discovery contracts, settings, the dispatcher) is in
:mod:`requestplane_core.plugin_api`; the conformance kits in :mod:`requestplane_core.testing`.
Those names stay importable from here too (not listed in ``__all__``), for code written
before the split.
"""

from .address import Address
from .discovery import Added, Instance, Removed, Snapshot, WatchEvent
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
)
from .manager import RequestPlane, installed_transports, read_core_settings
from .request import Handler, HandlerResult, Request
from .router import InstanceStats, Router
from .server import Health, Server, serve
from .transport import ClientStats, ResponseStream, TransportClient

__all__ = [
    "Added",
    "Address",
    "ClientStats",
    "ConfigError",
    "ConnectionLost",
    "DeadlineExceeded",
    "EndpointNotFound",
    "Handler",
    "HandlerResult",
    "Health",
    "Instance",
    "InstanceStats",
    "NoInstances",
    "Overloaded",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteError",
    "Removed",
    "Request",
    "RequestPlane",
    "RequestPlaneError",
    "ResponseStream",
    "Router",
    "Server",
    "Snapshot",
    "TransportClient",
    "Unavailable",
    "UnknownMode",
    "WatchEvent",
    "installed_transports",
    "read_core_settings",
    "serve",
]


# The plugin author's names, still importable from here (not in __all__) for plugins written
# before the two faces were fenced: ``from requestplane_core import TransportSpec`` works.
from .plugin_api import (
    Capabilities as Capabilities,
    CoreSettings as CoreSettings,
    DiscoveryBackend as DiscoveryBackend,
    DiscoverySpec as DiscoverySpec,
    Dispatch as Dispatch,
    Dispatcher as Dispatcher,
    InstanceFeed as InstanceFeed,
    Pending as Pending,
    PluginRegistry as PluginRegistry,
    PluginWarning as PluginWarning,
    RequestEvent as RequestEvent,
    Responder as Responder,
    SettingField as SettingField,
    TransportServer as TransportServer,
    TransportSpec as TransportSpec,
    Watch as Watch,
    describe_settings as describe_settings,
    discovery_env_prefix as discovery_env_prefix,
    error_from_wire as error_from_wire,
    hookimpl as hookimpl,
    instance_from_json as instance_from_json,
    instance_to_json as instance_to_json,
    load_plugins as load_plugins,
    load_settings as load_settings,
    loop_clock as loop_clock,
    non_negative as non_negative,
    not_blank as not_blank,
    positive as positive,
    positive_finite as positive_finite,
    setting as setting,
    transport_env_prefix as transport_env_prefix,
    valid_host as valid_host,
    valid_port as valid_port,
    validate_instance_id as validate_instance_id,
    validate_name as validate_name,
)
