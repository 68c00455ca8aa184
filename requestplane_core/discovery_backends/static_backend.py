"""``static`` discovery: a fixed list of instances, for deployments whose addresses are known.

From ``REQUESTPLANE_DISCOVERY_STATIC_INSTANCES`` (``name=address`` pairs separated by commas
or whitespace) and/or ``REQUESTPLANE_DISCOVERY_STATIC_FILE`` (the same pairs, one per line,
``#`` comments). Read once; read-only: servers do not publish into it. An instance's id is
derived from its address, so it is the same in every process that reads the same list.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup

from ..address import Address
from ..discovery import DiscoveryBackend, Instance, InstanceFeed, Watch, validate_name
from ..errors import ConfigError
from ..settings import setting

__all__ = ["StaticDiscovery", "StaticDiscoverySettings", "parse_static"]

_VAR = "REQUESTPLANE_DISCOVERY_STATIC_INSTANCES"
_FILE_VAR = "REQUESTPLANE_DISCOVERY_STATIC_FILE"


@attrs.frozen
class StaticDiscoverySettings:
    instances: str | None = setting(
        None,
        help="name=address pairs, e.g. 'echo=tcp://10.0.0.7:5000/echo echo=tcp://...'",
        accepts="name=address pairs separated by commas or spaces",
    )
    file: Path | None = setting(
        None,
        help="a file of name=address pairs, one per line ('#' starts a comment)",
        accepts="a file path, or 'none'",
    )


def parse_static(text: str, source: str) -> list[Instance]:
    """The instances ``text`` lists; ConfigError naming ``source`` for a malformed pair."""
    found: list[Instance] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for pair in line.replace(",", " ").split():
            name, sep, url = pair.partition("=")
            if not sep:
                raise ConfigError(f"{source}: {pair!r} is malformed: expected name=address")
            try:
                validate_name(name)
                address = Address.parse(url)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {pair!r}: {exc}") from None
            digest = hashlib.sha256(str(address).encode()).hexdigest()[:16]
            found.append(Instance(name, digest, address.scheme, str(address)))
    return found


class StaticDiscovery(DiscoveryBackend):
    read_only = True

    def __init__(self, settings: StaticDiscoverySettings) -> None:
        instances = parse_static(settings.instances or "", _VAR)
        if settings.file is not None:
            try:
                text = settings.file.read_text()
            except OSError as exc:
                raise ConfigError(
                    f"{_FILE_VAR}={str(settings.file)!r}: cannot read it: {exc.strerror or exc}"
                ) from None
            instances += parse_static(text, f"{_FILE_VAR} ({settings.file})")
        keys: set[tuple[str, str]] = set()
        self._instances: list[Instance] = []
        for instance in instances:
            if instance.key not in keys:  # the same pair listed twice is one instance
                keys.add(instance.key)
                self._instances.append(instance)
        self._source = settings.file or _VAR
        self._watches: set[InstanceFeed] = set()

    def describe(self) -> str:
        return f"static discovery from {self._source}"

    def start(self, task_group: TaskGroup) -> None:
        pass

    async def register(self, instance: Instance) -> None:
        raise ConfigError(
            "the static discovery backend is read-only: list the instance in "
            f"{_VAR} or {_FILE_VAR} instead"
        )

    async def unregister(self, instance: Instance) -> None:
        pass

    async def list_instances(self, name: str) -> list[Instance]:
        validate_name(name)
        return sorted((i for i in self._instances if i.name == name), key=lambda i: i.instance_id)

    async def names(self) -> list[str]:
        return sorted({i.name for i in self._instances})

    def watch(self, name: str) -> Watch:
        validate_name(name)
        feed = InstanceFeed(name, on_close=lambda: self._watches.discard(feed))
        feed.replace(self._instances)  # the snapshot; nothing ever changes after it
        self._watches.add(feed)
        return feed

    async def aclose(self) -> None:
        # The contract: closing the backend ends its watches (a caller iterating one would
        # otherwise wait forever on a list that never changes).
        for feed in list(self._watches):
            await feed.aclose()
        await anyio.lowlevel.checkpoint()
