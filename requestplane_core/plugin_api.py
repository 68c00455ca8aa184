"""The face of requestplane for plugin authors: what a transport, discovery backend or
observing plugin implements, declares and uses. Applications need none of it; they use
``requestplane_core`` itself. The conformance kits are beside it, in
``requestplane_core.testing``.

::

    from requestplane_core import Request, RequestPlaneError, Unavailable   # shared types
    from requestplane_core.plugin_api import TransportSpec, TransportServer, hookimpl
    from requestplane_core.plugin_api import ExchangeClient, Exchange   # a transport's client
"""

from .clock import loop_clock
from .config import ROUTE_MODES, CoreSettings, discovery_env_prefix, transport_env_prefix
from .discovery import (
    DiscoveryBackend,
    DiscoverySpec,
    InstanceFeed,
    Watch,
    instance_from_json,
    instance_to_json,
    validate_instance_id,
    validate_name,
)
from .dispatch import Dispatcher
from .errors import error_from_wire
from .exchange import Exchange, ExchangeEvent
from .exchange_client import ExchangeClient
from .exchange_stream import ExchangeResponseStream
from .hookspecs import hookimpl
from .observer import RequestEvent
from .plugins import PluginRegistry, PluginWarning, load_plugins
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
from .transport_settings import (
    advertise_host_setting,
    host_setting,
    max_message_size_setting,
    port_setting,
    request_timeout_setting,
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
    "ROUTE_MODES",
    "Capabilities",
    "ClientStats",
    "CoreSettings",
    "DiscoveryBackend",
    "DiscoverySpec",
    "Dispatch",
    "Dispatcher",
    "Exchange",
    "ExchangeClient",
    "ExchangeEvent",
    "ExchangeResponseStream",
    "InstanceFeed",
    "Pending",
    "PluginRegistry",
    "PluginWarning",
    "RequestEvent",
    "Responder",
    "ResponseStream",
    "SettingField",
    "TransportClient",
    "TransportServer",
    "TransportSpec",
    "Watch",
    "advertise_host_setting",
    "describe_settings",
    "discovery_env_prefix",
    "error_from_wire",
    "hookimpl",
    "host_setting",
    "instance_from_json",
    "instance_to_json",
    "load_plugins",
    "load_settings",
    "loop_clock",
    "max_message_size_setting",
    "non_negative",
    "not_blank",
    "port_setting",
    "positive",
    "positive_finite",
    "request_timeout_setting",
    "setting",
    "transport_env_prefix",
    "valid_host",
    "valid_port",
    "validate_instance_id",
    "validate_name",
]
