"""The discovery contract: how workers publish their endpoints by name and callers find them.

A discovery backend is a :class:`DiscoverySpec`, provided by a plugin through the
``requestplane_discovery_backends`` hook, like a transport. It builds a
:class:`DiscoveryBackend` that stores :class:`Instance` records: one per endpoint name served
by one server. A record stays alive while its owner keeps it alive (a lease, a heartbeat)
and disappears when the owner unregisters it, closes, or dies. Callers never look a name up
per request: they watch it (:meth:`DiscoveryBackend.watch`), keep a local table from the
:class:`Snapshot` that opens every watch, and apply the :class:`Added` / :class:`Removed`
events that follow.

Leased stores (etcd, Consul, Kubernetes EndpointSlices) fit this contract as they are:
register puts a key under a lease and keeps the lease alive; watch lists, then follows the
store's own watch; a watch that loses its store re-lists when it comes back and reports the
difference (:class:`InstanceFeed` does that bookkeeping for any backend).
"""

from __future__ import annotations

import abc
import json
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from .errors import ConfigError

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "Added",
    "DiscoveryBackend",
    "DiscoverySpec",
    "Instance",
    "InstanceFeed",
    "Removed",
    "Snapshot",
    "Watch",
    "WatchEvent",
    "instance_from_json",
    "instance_to_json",
    "validate_instance_id",
    "validate_name",
]

S = TypeVar("S")

# Characters safe in a NATS subject token, a file name and a URL path segment alike.
_SEGMENT = r"[A-Za-z0-9_-]+"
_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,2}}")
_INSTANCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_NAME = 200


def validate_name(name: str) -> str:
    """``name`` if it is a valid endpoint name to publish, else :class:`ConfigError`.

    A name is 1 to 3 segments joined by ``/`` (``generate``, ``llm/decode/generate``), each
    of letters, digits, ``_`` and ``-``: safe in NATS subjects, file names and URL paths.
    """
    if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a valid endpoint name: expected 1-3 segments joined by '/', "
            "each of letters, digits, '_' and '-' (e.g. 'llm/decode/generate')"
        )
    return name


def validate_instance_id(instance_id: str) -> str:
    """``instance_id`` if it is 1-64 letters, digits, ``_`` or ``-``, else ConfigError."""
    if not isinstance(instance_id, str) or not _INSTANCE_ID.fullmatch(instance_id):
        raise ConfigError(
            f"{instance_id!r} is not a valid instance id: expected 1-64 letters, digits, '_' or '-'"
        )
    return instance_id


def _labels(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> Mapping[str, str]:
    items = dict(value)
    for key, val in items.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise ConfigError(f"instance metadata must map str to str, got {key!r}: {val!r}")
    # Read-only, so that a record shared between a router's table and its events cannot be
    # changed under either of them.
    return types.MappingProxyType(dict(sorted(items.items())))


@attrs.frozen
class Instance:
    """One endpoint name served by one server: what discovery stores and callers route to.

    ``transport`` is the transport's name and ``address`` the address (a URL string) that
    reaches this instance alone; ``metadata`` holds labels such as ``version`` or ``zone``;
    ``registered_at`` is the owner's wall clock (seconds since the epoch) at registration.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: validate_name(v))
    instance_id: str = attrs.field(validator=lambda _i, _a, v: validate_instance_id(v))
    transport: str
    address: str
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_labels, eq=False, hash=False)
    registered_at: float = attrs.field(default=0.0, eq=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the record in a store: one per name and instance."""
        return (self.name, self.instance_id)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every label in ``labels`` has the same value in :attr:`metadata`."""
        return all(self.metadata.get(k) == v for k, v in labels.items())


def instance_to_json(instance: Instance, **extra: object) -> bytes:
    """The record as the JSON object backends store (``extra`` keys added, e.g. a pid)."""
    record = {
        "name": instance.name,
        "instance": instance.instance_id,
        "transport": instance.transport,
        "address": instance.address,
        "metadata": dict(instance.metadata),
        "registered_at": instance.registered_at,
        **extra,
    }
    return json.dumps(record, separators=(",", ":")).encode()


def instance_from_json(data: bytes | str) -> tuple[Instance, dict[str, Any]]:
    """Parse a stored record: the instance and the whole JSON object (for extra keys).

    Raises ``ValueError`` for anything that is not a valid record, so that a backend can skip
    a corrupt entry with a warning instead of failing.
    """
    try:
        try:
            record = json.loads(data)
        except RecursionError:  # nested too deep for the parser: no record nests at all
            raise ValueError("not a JSON object (nested too deeply)") from None
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        registered = record.get("registered_at", 0.0)
        if not isinstance(registered, (int, float)) or not math.isfinite(registered):
            raise ValueError("registered_at is not a number")
        instance = Instance(
            name=_str(record, "name"),
            instance_id=_str(record, "instance"),
            transport=_str(record, "transport"),
            address=_str(record, "address"),
            metadata=record.get("metadata") or {},
            registered_at=float(registered),
        )
    except (ConfigError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    return instance, record


def _str(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is missing or not a string")
    return value


# -- watch events ----------------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    """The first event of every watch: the live instances of the name at that moment."""

    instances: tuple[Instance, ...]


@attrs.frozen
class Added:
    """An instance of the watched name became live."""

    instance: Instance


@attrs.frozen
class Removed:
    """An instance of the watched name is gone (unregistered, closed, expired)."""

    instance: Instance


WatchEvent = Snapshot | Added | Removed


class Watch(abc.ABC):
    """The events of one watched name, in order: a :class:`Snapshot`, then :class:`Added`
    and :class:`Removed` events. Iterate it; leave with :meth:`aclose` or ``async with``.

    It ends (``StopAsyncIteration``) only when closed, by the caller or by the backend's
    ``aclose()``; a lost store is not an end, the watch resumes when the store is back.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> WatchEvent: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class InstanceFeed(Watch):
    """A :class:`Watch` fed by its backend, which does the event bookkeeping once for all.

    The backend calls :meth:`replace` with the full set of live instances (its first call
    becomes the :class:`Snapshot`; later calls emit the difference: what a polling backend,
    or an event-driven one re-listing after a reconnect, needs so that no event is lost or
    repeated), or :meth:`put` / :meth:`delete` for single changes from a store's own watch
    (repeats are ignored). ``on_close`` stops whatever feeds it.
    """

    def __init__(self, name: str, on_close: Callable[[], None] | None = None) -> None:
        self.name = name
        self._known: dict[tuple[str, str], Instance] | None = None
        self._send, self._receive = anyio.create_memory_object_stream[WatchEvent](math.inf)
        self._on_close = on_close
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the snapshot has been sent."""
        return self._known is not None

    def replace(self, instances: Iterable[Instance]) -> None:
        current = {i.key: i for i in instances if i.name == self.name}
        if self._known is None:
            self._known = current
            self._emit(Snapshot(tuple(sorted(current.values(), key=_order))))
            return
        # In key order, like the additions: the same difference gives the same events
        # whatever order the backend listed the instances in.
        for key, old in sorted(self._known.items()):
            new = current.get(key)
            if new is None or new.address != old.address:
                del self._known[key]
                self._emit(Removed(old))
        for key, new in sorted(current.items()):
            if key not in self._known:
                self._known[key] = new
                self._emit(Added(new))

    def put(self, instance: Instance) -> None:
        if instance.name != self.name or self._known is None:
            return
        old = self._known.get(instance.key)
        if old is not None:
            if old.address == instance.address:
                return
            self._emit(Removed(old))
        self._known[instance.key] = instance
        self._emit(Added(instance))

    def delete(self, key: tuple[str, str]) -> None:
        if self._known is None:
            return
        old = self._known.pop(key, None)
        if old is not None:
            self._emit(Removed(old))

    def _emit(self, event: WatchEvent) -> None:
        if not self._closed:
            self._send.send_nowait(event)

    async def __anext__(self) -> WatchEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send.close()
        self._receive.close()
        if self._on_close is not None:
            self._on_close()


def _order(instance: Instance) -> tuple[str, str]:
    return instance.key


# -- the backend -----------------------------------------------------------------------------


class DiscoveryBackend(abc.ABC):
    """Where instances are published and found. Everything async runs on asyncio and trio.

    The core drives a backend like a transport client: :meth:`start` once with a task group
    for its background work (keep-alives, watchers), then any calls, then :meth:`aclose`,
    which withdraws what this backend registered and ends its watches.
    """

    #: A read-only backend (a fixed list) cannot publish: servers skip registering into it.
    read_only: ClassVar[bool] = False

    #: Seconds the watchers of a name need to see a withdrawal. A server that has served
    #: requests keeps serving for that long after withdrawing (and as long as requests still
    #: arrive), so that callers which have not heard yet do not meet a closed door.
    withdraw_grace: float = 0.0

    @abc.abstractmethod
    def start(self, task_group: TaskGroup) -> None:
        """Attach to ``task_group`` for background tasks; called once before use."""

    @abc.abstractmethod
    async def register(self, instance: Instance) -> None:
        """Publish ``instance`` and keep it alive until :meth:`unregister` or :meth:`aclose`.

        A record of the same name and instance id that is live already (this process's or
        another's) is refused with :class:`ConfigError`. A store that cannot be reached
        raises :class:`~requestplane_core.Unavailable` saying what to check.
        """

    @abc.abstractmethod
    async def unregister(self, instance: Instance) -> None:
        """Withdraw ``instance`` (by name and instance id); unknown ones are ignored."""

    @abc.abstractmethod
    async def list_instances(self, name: str) -> list[Instance]:
        """The live instances of ``name`` now, ordered by instance id."""

    async def names(self) -> list[str]:
        """Every name with live instances, sorted. Optional: a backend that cannot list
        names raises :class:`ConfigError` (callers then ask for one name)."""
        raise ConfigError(f"{self.describe()} cannot list every name: give a name")

    @abc.abstractmethod
    def watch(self, name: str) -> Watch:
        """Follow ``name``: a :class:`Snapshot`, then :class:`Added` / :class:`Removed`."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Withdraw every instance this backend registered, end its watches, disconnect."""

    def describe(self) -> str:
        """Where this backend looks, for error messages (a directory, a server URL)."""
        return type(self).__name__


@attrs.frozen
class DiscoverySpec(Generic[S]):
    """One discovery backend, as a plugin provides it through
    ``requestplane_discovery_backends``.

    ``backend`` is called with the loaded settings (an instance of ``settings``, read from
    ``REQUESTPLANE_DISCOVERY_<NAME>_<SETTING>``); it must not do I/O, which belongs in
    :meth:`DiscoveryBackend.start` and the calls.
    """

    name: str
    description: str
    settings: type[S]
    backend: Callable[[S], DiscoveryBackend]
