"""``file`` discovery: one JSON file per instance in a local directory; the embedded default.

``<dir>/<name segments as directories>/<instance id>.json``, written atomically (a temporary
file renamed over the record). The owner keeps a record alive by touching it every third of
its TTL; a record is live while it was touched within its TTL and, on this host, while the
process that wrote it exists, so a SIGKILLed worker on this machine disappears at the next
sweep rather than after a TTL.

Watching polls, cheaply: every ``poll_interval`` it compares the name directory's
modification time (which changes when a record appears, is replaced or is removed, but not
when one is touched), and re-reads the directory only then, or at a liveness sweep every
quarter TTL (at most every 0.5 s). No file is read twice while it does not change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

import anyio
import attrs
from anyio.abc import TaskGroup

from ..discovery import (
    DiscoveryBackend,
    Instance,
    InstanceFeed,
    Watch,
    instance_from_json,
    instance_to_json,
    validate_name,
)
from ..errors import ConfigError
from ..settings import setting
from ..validators import positive_finite

__all__ = ["FileDiscovery", "FileDiscoverySettings", "default_directory"]

log = logging.getLogger("requestplane.discovery")

_HOST = socket.gethostname()
_SUFFIX = ".json"


def default_directory() -> Path:
    """The per-user runtime directory (``/run/user/<uid>``) when there is one, else a
    per-user directory under the temporary directory."""
    uid = os.getuid()
    run = Path(f"/run/user/{uid}")
    base = run if run.is_dir() and os.access(run, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"requestplane-{uid}" / "discovery"


def _ttl_ok(value: float) -> bool:
    return 1.0 <= value <= 86400.0


@attrs.frozen
class FileDiscoverySettings:
    dir: Path | None = setting(
        None,
        help="directory holding the instance records (default: a per-user runtime directory)",
        accepts="a directory path, or 'none' for the default",
    )
    ttl: float = setting(
        10.0,
        help="seconds a record stays live without a heartbeat (heartbeats every ttl/3)",
        accepts="a number of seconds from 1 to 86400",
        check=_ttl_ok,
    )
    poll_interval: float = setting(
        0.05,
        help="seconds between two looks of a watch at its name's directory",
        accepts="a number of seconds > 0",
        check=positive_finite,
    )


@attrs.define(eq=False)
class _Cached:
    """A record file as last read: its content is re-read only when its inode changes."""

    inode: int
    instance: Instance | None  # None: corrupt (warned once)
    pid: int | None
    host: str | None
    ttl: float


class FileDiscovery(DiscoveryBackend):
    def __init__(self, settings: FileDiscoverySettings) -> None:
        self._settings = settings
        self._root = settings.dir if settings.dir is not None else default_directory()
        # Two polls of a watcher with the same settings, and a margin for a busy machine.
        self.withdraw_grace = 2 * settings.poll_interval + 0.05
        self._owned: dict[tuple[str, str], tuple[Instance, Path]] = {}
        self._cache: dict[Path, _Cached] = {}
        self._watches: set[InstanceFeed] = set()
        self._tg: TaskGroup | None = None
        self._heartbeat_scope: anyio.CancelScope | None = None
        self._closed = False

    def describe(self) -> str:
        return f"file discovery in {self._root}"

    def start(self, task_group: TaskGroup) -> None:
        self._tg = task_group

    # -- paths -------------------------------------------------------------------------------

    def _dir_of(self, name: str) -> Path:
        return self._root.joinpath(*validate_name(name).split("/"))

    def _path_of(self, instance: Instance) -> Path:
        return self._dir_of(instance.name) / f"{instance.instance_id}{_SUFFIX}"

    # -- publishing --------------------------------------------------------------------------

    async def register(self, instance: Instance) -> None:
        if instance.key in self._owned:
            raise ConfigError(
                f"instance {instance.instance_id} of {instance.name!r} is already registered"
            )
        path = self._path_of(instance)
        self._make_dir(path.parent)
        existing = self._read(path)
        if existing is not None and existing.instance is not None and self._live(path, existing):
            raise ConfigError(
                f"instance {instance.instance_id} of {instance.name!r} is already registered "
                f"in {self._root} (by pid {existing.pid} on {existing.host})"
            )
        self._write(instance, path)
        self._owned[instance.key] = (instance, path)
        if self._heartbeat_scope is None and self._tg is not None:
            self._heartbeat_scope = anyio.CancelScope()
            self._tg.start_soon(self._heartbeat, self._heartbeat_scope)

    def _make_dir(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable")
        except OSError as exc:
            raise ConfigError(
                f"REQUESTPLANE_DISCOVERY_FILE_DIR: cannot write instance records in "
                f"{directory}: {exc.strerror or exc}; set it to a writable directory"
            ) from None

    def _write(self, instance: Instance, path: Path) -> None:
        data = instance_to_json(instance, pid=os.getpid(), host=_HOST, ttl=self._settings.ttl)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic: a reader sees the old record or the new one
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ConfigError(
                f"REQUESTPLANE_DISCOVERY_FILE_DIR: cannot write {path}: {exc.strerror or exc}"
            ) from None

    async def unregister(self, instance: Instance) -> None:
        owned = self._owned.pop(instance.key, None)
        if owned is not None:
            with contextlib.suppress(FileNotFoundError):
                owned[1].unlink()
            self._cache.pop(owned[1], None)

    async def _heartbeat(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self._settings.ttl / 3)
                for instance, path in list(self._owned.values()):
                    try:
                        os.utime(path)
                    except FileNotFoundError:
                        # Removed under us (swept while we were stalled, directory wiped):
                        # assert the record again.
                        log.warning("%s: record of %s vanished; rewriting it", self, path)
                        with contextlib.suppress(ConfigError):
                            self._make_dir(path.parent)
                            self._write(instance, path)
                    except OSError as exc:
                        log.warning("cannot refresh %s: %s", path, exc)

    # -- reading -----------------------------------------------------------------------------

    def _read(self, path: Path) -> _Cached | None:
        try:
            inode = path.stat().st_ino
        except FileNotFoundError:
            self._cache.pop(path, None)
            return None
        cached = self._cache.get(path)
        if cached is not None and cached.inode == inode:
            return cached
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            instance, record = instance_from_json(data)
            pid, host, ttl = record.get("pid"), record.get("host"), record.get("ttl")
            if path.stem != instance.instance_id:
                raise ValueError("the file name is not the record's instance id")
            cached = _Cached(
                inode,
                instance,
                pid if isinstance(pid, int) else None,
                host if isinstance(host, str) else None,
                float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else self._settings.ttl,
            )
        except ValueError as exc:
            log.warning("skipping the corrupt discovery record %s: %s", path, exc)
            cached = _Cached(inode, None, None, None, self._settings.ttl)
        self._cache[path] = cached
        return cached

    def _live(self, path: Path, cached: _Cached, now: float | None = None) -> bool:
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return False
        if (now if now is not None else time.time()) - mtime > cached.ttl:
            return False
        if cached.host == _HOST and cached.pid is not None:
            return _pid_alive(cached.pid)
        return True

    def _scan(self, name: str) -> list[Instance]:
        directory = self._dir_of(name)
        try:
            entries = [
                e
                for e in os.scandir(directory)
                if e.name.endswith(_SUFFIX) and not e.name.startswith(".")
            ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        now = time.time()
        live = []
        for entry in entries:
            path = Path(entry.path)
            cached = self._read(path)
            if cached is None or cached.instance is None:
                continue
            if self._live(path, cached, now):
                live.append(cached.instance)
        live.sort(key=lambda i: i.instance_id)
        return live

    async def list_instances(self, name: str) -> list[Instance]:
        return self._scan(name)

    async def names(self) -> list[str]:
        found: set[str] = set()
        for directory, _subdirs, files in os.walk(self._root):
            if any(f.endswith(_SUFFIX) and not f.startswith(".") for f in files):
                name = Path(directory).relative_to(self._root).as_posix()
                with contextlib.suppress(ConfigError):
                    if self._scan(name):
                        found.add(name)
        return sorted(found)

    def watch(self, name: str) -> Watch:
        validate_name(name)
        if self._tg is None:
            raise RuntimeError("start() the backend before watching")
        scope = anyio.CancelScope()

        def closed() -> None:
            scope.cancel()
            self._watches.discard(feed)

        feed = InstanceFeed(name, on_close=closed)
        self._watches.add(feed)
        self._tg.start_soon(self._follow, feed, scope)
        return feed

    async def _follow(self, feed: InstanceFeed, scope: anyio.CancelScope) -> None:
        directory = self._dir_of(feed.name)
        sweep_every = min(self._settings.ttl / 4, 0.5)
        seen: int | None = -1
        next_sweep = 0.0
        with scope:
            while True:
                try:
                    stamp: int | None = directory.stat().st_mtime_ns
                except OSError:
                    stamp = None
                now = time.monotonic()
                if stamp != seen or now >= next_sweep:
                    seen, next_sweep = stamp, now + sweep_every
                    feed.replace(self._scan(feed.name))
                await anyio.sleep(self._settings.poll_interval)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for key in list(self._owned):
            await self.unregister(self._owned[key][0])
        if self._heartbeat_scope is not None:
            self._heartbeat_scope.cancel()
        for feed in list(self._watches):
            await feed.aclose()
        self._watches.clear()

    def __str__(self) -> str:
        return self.describe()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return True
    # A killed child its parent has not reaped yet is a zombie: it answers kill(0) but is dead.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
