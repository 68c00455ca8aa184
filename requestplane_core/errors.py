"""The one error hierarchy every transport raises.

Each error has a stable wire ``code`` so that a transport can carry it across the network as a
short string and rebuild the same type on the other side with :func:`error_from_wire`.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConfigError",
    "ConnectionLost",
    "DeadlineExceeded",
    "EndpointNotFound",
    "NoInstances",
    "Overloaded",
    "PayloadTooLarge",
    "ProtocolError",
    "RemoteError",
    "RequestPlaneError",
    "Unavailable",
    "UnknownMode",
    "error_from_wire",
]


class RequestPlaneError(Exception):
    """Base of every error requestplane raises.

    ``retriable`` tells a caller whether sending the same request again (to this or another
    instance) is safe: the server guarantees the handler did not run.
    """

    code: ClassVar[str] = "internal"
    retriable: ClassVar[bool] = False

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class EndpointNotFound(RequestPlaneError):
    """No endpoint of that name is registered at the address."""

    code = "not_found"


class RemoteError(RequestPlaneError):
    """The handler raised. Carries the remote exception's type name and message."""

    code = "remote"

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.remote_message = message

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str]]:
        return (RemoteError, (self.type_name, self.remote_message))


class Overloaded(RequestPlaneError):
    """Shed by admission control before the handler ran; retry later or elsewhere."""

    code = "overloaded"
    retriable = True


class Unavailable(RequestPlaneError):
    """The request did not reach a handler: the server refused it while draining or
    shutting down, or it could not be connected to. Retry elsewhere."""

    code = "unavailable"
    retriable = True


class NoInstances(Unavailable):
    """A router has no live instance to send to: none is known for the name, or every known
    one is set aside. Retriable: instances may appear; the message says how many are known,
    how many set aside, and which discovery backend was asked."""

    code = "no_instances"


class DeadlineExceeded(RequestPlaneError):
    """The request's deadline passed before its outcome was known."""

    code = "deadline"


class PayloadTooLarge(RequestPlaneError):
    """A payload or response is larger than the configured maximum message size."""

    code = "too_large"


class ConnectionLost(RequestPlaneError):
    """The transport broke before the outcome was known; the handler may or may not have run."""

    code = "connection_lost"


class ProtocolError(ConnectionLost):
    """The peer sent something that is not this transport's protocol (or not its version)."""

    code = "protocol"


class ConfigError(RequestPlaneError):
    """A setting (from the environment or from code) is malformed."""

    code = "config"


class UnknownMode(ConfigError):
    """``REQUESTPLANE_MODE`` names a transport that is not installed."""

    code = "unknown_mode"


_BY_CODE: dict[str, type[RequestPlaneError]] = {
    cls.code: cls
    for cls in (
        RequestPlaneError,
        EndpointNotFound,
        Overloaded,
        Unavailable,
        NoInstances,
        DeadlineExceeded,
        PayloadTooLarge,
        ConnectionLost,
        ProtocolError,
        ConfigError,
        UnknownMode,
    )
}


def error_from_wire(code: str, message: str, remote_type: str = "") -> RequestPlaneError:
    """Rebuild the typed error a peer sent as ``(code, message, remote_type)``.

    An unknown code (a newer peer) becomes a plain :class:`RequestPlaneError` rather than
    failing, so old clients still get *an* error, never a lost request.
    """
    if code == RemoteError.code:
        return RemoteError(remote_type or "Exception", message)
    return _BY_CODE.get(code, RequestPlaneError)(message)
