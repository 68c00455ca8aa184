"""``file`` discovery: one JSON file per instance in a local directory; the embedded default.

``<dir>/<name segments as directories>/<instance id>.json``, written atomically (a temporary
file hard-linked into place, so that of two owners of one id only one succeeds). The owner
keeps a record alive by touching it every third of its TTL; a record is live while it was
touched within its TTL and, on this host, while the process that wrote it exists (a zombie
counts as dead), so a SIGKILLed worker on this machine disappears at the next sweep rather
than after a TTL. Whoever sees a record whose owner is gone for good deletes it, so that
crashed workers leave no files behind.

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


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None  # not Linux: one namespace as far as we can tell


#: Processes sharing a host name (containers on the host's network) may live in other pid
#: namespaces, where our pids name other processes: only a record of our host *and* pid
#: namespace has an owner we can look up.
_PIDNS = _pid_namespace()
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
    """A record file as last read. A file system reuses the inode of a file removed a moment
    ago, so the inode alone does not tell two records apart: after the directory changed, a
    file whose modification time or size moved is read again too."""

    inode: int
    mtime_ns: int
    size: int
    instance: Instance | None  # None: corrupt or unreadable (warned once per version)
    pid: int | None
    host: str | None
    ttl: float
    local: bool = False  # its owner is a process we can see: its liveness is checked

    def same_file(self, st: os.stat_result, strict: bool) -> bool:
        if self.inode != st.st_ino:
            return False
        return not strict or (self.mtime_ns == st.st_mtime_ns and self.size == st.st_size)


@attrs.define(eq=False)
class _Follower:
    """What the poller knows of one watched name's directory, shared by this backend's
    watches of the name: N watches of one name cost one look per poll, not N."""

    directory: Path
    feeds: set[InstanceFeed] = attrs.field(factory=set)
    rescan: bool = True  # look at every file at the next poll (a new watch, a failure)
    seen: int | None = -1  # the directory's modification time at the last look
    next_sweep: float = 0.0
    failing: bool = False
    last: list[Instance] | None = None


#: Records are a few hundred bytes: a file much larger is not one (and is not read whole).
_MAX_RECORD = 64 * 1024
#: A directory changed this recently may change again without its modification time moving
#: (timestamps come from a coarse kernel clock): a watch looks again at its next poll.
_STAMP_GRAIN_NS = 50_000_000
#: A record that expired this many TTLs ago is deleted by whoever sees it (its owner, if it
#: is only stalled, writes it again at its next heartbeat).
_COLLECT_AFTER_TTLS = 3.0


class FileDiscovery(DiscoveryBackend):
    def __init__(self, settings: FileDiscoverySettings) -> None:
        self._settings = settings
        self._root = settings.dir if settings.dir is not None else default_directory()
        # Two polls of a watcher with the same settings, and a margin for a busy machine.
        self.withdraw_grace = 2 * settings.poll_interval + 0.05
        self._owned: dict[tuple[str, str], tuple[Instance, Path]] = {}
        # Per name directory, the record files its last scan saw (by file name): records
        # that disappear are forgotten at the next scan.
        self._cache: dict[Path, dict[str, _Cached]] = {}
        self._watches: set[InstanceFeed] = set()
        self._followers: dict[str, _Follower] = {}
        self._poller: anyio.CancelScope | None = None
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
        # Created with a hard link, which fails if the record exists: of two processes
        # registering one id at once, one wins and the other is refused.
        if not self._write(instance, path, exclusive=True):
            cached = self._read(path, strict=True)
            if cached is not None and cached.instance is not None:
                if self._live(cached, time.time(), {}):
                    raise ConfigError(
                        f"instance {instance.instance_id} of {instance.name!r} is already "
                        f"registered in {self._root} (by pid {cached.pid} on {cached.host})"
                    )
            self._write(instance, path, exclusive=False)  # a dead owner's record: take it
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

    def _write(self, instance: Instance, path: Path, exclusive: bool) -> bool:
        """Write the record (atomically: a reader sees no record, the old one or the new
        one); with ``exclusive``, only if there is none (False: there is one)."""
        data = instance_to_json(
            instance, pid=os.getpid(), host=_HOST, pidns=_PIDNS, ttl=self._settings.ttl
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            if exclusive:
                try:
                    os.link(tmp, path)
                    return True
                except FileExistsError:
                    return False
                except OSError:
                    pass  # no hard links on this file system: check-then-replace it is
                found = self._read(path, strict=True)
                if found is not None and found.instance is not None:
                    return False
            os.replace(tmp, path)
            return True
        except OSError as exc:
            raise ConfigError(
                f"REQUESTPLANE_DISCOVERY_FILE_DIR: cannot write {path}: {exc.strerror or exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    async def unregister(self, instance: Instance) -> None:
        owned = self._owned.pop(instance.key, None)
        if owned is None:
            return
        path = owned[1]
        # Only our own record: if ours expired (this process stalled past its TTL) and
        # another owner took the id, the record is theirs now.
        try:
            _, record = instance_from_json(path.read_bytes())
        except (OSError, ValueError):
            return
        mine = (record.get("pid"), record.get("host"), record.get("pidns"))
        if mine == (os.getpid(), _HOST, _PIDNS):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _heartbeat(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self._settings.ttl / 3)
                for instance, path in list(self._owned.values()):
                    try:
                        os.utime(path)
                    except FileNotFoundError:
                        # Removed under us (collected while we were stalled, directory
                        # wiped): assert the record again.
                        log.warning("%s: record of %s vanished; rewriting it", self, path)
                        try:
                            self._make_dir(path.parent)
                            self._write(instance, path, exclusive=False)
                        except ConfigError as exc:
                            log.warning("%s", exc)
                    except OSError as exc:
                        log.warning("cannot refresh %s: %s", path, exc)

    # -- reading -----------------------------------------------------------------------------

    def _read(self, path: Path, strict: bool, st: os.stat_result | None = None) -> _Cached | None:
        """The record at ``path`` (None: no file), read again only if the file changed;
        ``strict`` after its directory changed (see :class:`_Cached`). ``st``: its stat, if
        the caller has it already."""
        cache = self._cache.setdefault(path.parent, {})
        try:
            if st is None:
                st = path.stat()
        except FileNotFoundError:
            cache.pop(path.name, None)
            return None
        except OSError as exc:
            log.warning("skipping the discovery record %s: %s", path, exc.strerror or exc)
            return None
        cached = cache.get(path.name)
        if cached is not None and cached.same_file(st, strict):
            cached.mtime_ns, cached.size = st.st_mtime_ns, st.st_size
            return cached
        try:
            if st.st_size > _MAX_RECORD:
                raise ValueError(f"{st.st_size} bytes, more than a record ever has")
            data = path.read_bytes()
            instance, record = instance_from_json(data)
            pid, host, ttl = record.get("pid"), record.get("host"), record.get("ttl")
            if path.stem != instance.instance_id:
                raise ValueError("the file name is not the record's instance id")
            cached = _Cached(
                st.st_ino,
                st.st_mtime_ns,
                st.st_size,
                instance,
                pid if isinstance(pid, int) else None,
                host if isinstance(host, str) else None,
                float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else self._settings.ttl,
                # Records written before the namespace was recorded: as if ours.
                local=host == _HOST and record.get("pidns", _PIDNS) == _PIDNS,
            )
        except FileNotFoundError:
            cache.pop(path.name, None)
            return None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            log.warning("skipping the corrupt discovery record %s: %s", path, reason)
            cached = _Cached(
                st.st_ino, st.st_mtime_ns, st.st_size, None, None, None, self._settings.ttl
            )
        cache[path.name] = cached
        return cached

    def _live(self, cached: _Cached, now: float, alive: dict[int, bool]) -> bool:
        if now - cached.mtime_ns / 1e9 > cached.ttl:
            return False
        if cached.local and cached.pid is not None:
            if cached.pid not in alive:  # one look per process per scan
                alive[cached.pid] = _pid_alive(cached.pid)
            return alive[cached.pid]
        return True

    def _scan(self, name: str, strict: bool = True) -> list[Instance]:
        """Every record of ``name``'s directory: its listing, each file's stat, and the
        files that changed read again."""
        directory = self._dir_of(name)
        try:
            with os.scandir(directory) as it:
                entries = []
                for e in it:
                    if e.name.endswith(_SUFFIX) and not e.name.startswith("."):
                        try:
                            entries.append((e.name, e.stat()))
                        except FileNotFoundError:
                            pass  # removed since the listing
        except (FileNotFoundError, NotADirectoryError):
            self._cache.pop(directory, None)
            return []
        except OSError as exc:
            raise ConfigError(
                f"REQUESTPLANE_DISCOVERY_FILE_DIR: cannot read {directory}: {exc.strerror or exc}"
            ) from None
        old = self._cache.get(directory, {})
        self._cache[directory] = {n: old[n] for n, _ in entries if n in old}
        now = time.time()
        alive: dict[int, bool] = {}
        live = []
        for entry, st in entries:
            path = directory / entry
            cached = self._read(path, strict, st)
            if cached is None or cached.instance is None:
                continue
            if self._live(cached, now, alive):
                live.append(cached.instance)
            else:
                self._collect(path, cached, now, alive)
        live.sort(key=lambda i: i.instance_id)
        return live

    def _sweep(self, name: str) -> list[Instance]:
        """The live records of ``name`` when its directory did not change (no record came,
        went or was replaced): only liveness can have changed. A record's file is looked at
        only once half its TTL passed since its last known heartbeat (before that it cannot
        have expired), and each owner process once: with many records, much cheaper than a
        :meth:`_scan`."""
        directory = self._dir_of(name)
        cache = self._cache.get(directory)
        if cache is None:
            return self._scan(name, strict=False)
        now = time.time()
        alive: dict[int, bool] = {}
        live = []
        for entry, known in list(cache.items()):
            cached: _Cached | None = known
            if now - known.mtime_ns / 1e9 > known.ttl / 2:
                cached = self._read(directory / entry, strict=False)
            if cached is None or cached.instance is None:
                continue
            if self._live(cached, now, alive):
                live.append(cached.instance)
            else:
                self._collect(directory / entry, cached, now, alive)
        live.sort(key=lambda i: i.instance_id)
        return live

    def _collect(self, path: Path, cached: _Cached, now: float, alive: dict[int, bool]) -> None:
        """Delete a record whose owner is gone for good (a dead process on this host, or
        no heartbeat for several TTLs), so that dead records do not pile up."""
        dead = cached.local and cached.pid is not None and not alive.get(cached.pid, True)
        if not dead and now - cached.mtime_ns / 1e9 < cached.ttl * _COLLECT_AFTER_TTLS:
            return
        try:
            again = path.stat()
            if again.st_ino == cached.inode and again.st_mtime_ns == cached.mtime_ns:
                path.unlink()
                log.debug("removed the dead discovery record %s", path)
        except OSError:
            pass  # gone already, or not ours to delete: readers skip it all the same
        self._cache.get(path.parent, {}).pop(path.name, None)

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
        if self._closed:
            raise RuntimeError(f"{self} is closed")
        follower = self._followers.get(name)
        if follower is None:
            follower = self._followers[name] = _Follower(self._dir_of(name))
        if self._poller is None:
            self._poller = anyio.CancelScope()
            self._tg.start_soon(self._poll, self._poller)

        def closed() -> None:
            self._watches.discard(feed)
            follower.feeds.discard(feed)
            if not follower.feeds and self._followers.get(name) is follower:
                del self._followers[name]
            if not self._followers and self._poller is not None:
                self._poller.cancel()
                self._poller = None

        feed = InstanceFeed(name, on_close=closed)
        self._watches.add(feed)
        follower.feeds.add(feed)
        follower.rescan = True  # the new watch's Snapshot: from a fresh look, not the last
        return feed

    async def _poll(self, scope: anyio.CancelScope) -> None:
        """One task looks at every watched name each poll: on many machines a wake-up costs
        more than looking at a directory."""
        sweep_every = min(self._settings.ttl / 4, 0.5)
        with scope:
            while True:
                for name, follower in list(self._followers.items()):
                    self._look(name, follower, sweep_every)
                await anyio.sleep(self._settings.poll_interval)

    def _look(self, name: str, follower: _Follower, sweep_every: float) -> None:
        try:
            stamp: int | None = follower.directory.stat().st_mtime_ns
        except OSError:
            stamp = None
        now = time.monotonic()
        changed = stamp != follower.seen or follower.rescan
        if not changed and now < follower.next_sweep:
            return
        follower.rescan = False
        try:
            instances = self._scan(name) if changed else self._sweep(name)
        except ConfigError as exc:
            # Keep the tables (the instances did not go anywhere); look again.
            if not follower.failing:
                log.warning("%s: watching %r: %s", self, name, exc)
            follower.failing = follower.rescan = True
            return
        follower.failing = False
        recent = stamp is not None and time.time_ns() - stamp < _STAMP_GRAIN_NS
        follower.seen = -1 if recent else stamp
        follower.next_sweep = now + sweep_every
        previous, follower.last = follower.last, instances
        # Every started watch knows ``previous`` (each got every look's difference): the
        # difference is worked out once, not once per watch.
        gone, came = ([], []) if instances == previous else _difference(previous, instances)
        for feed in list(follower.feeds):
            if not feed.started:
                feed.replace(instances)  # its Snapshot
                continue
            for key in gone:
                feed.delete(key)
            for instance in came:
                feed.put(instance)

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
        if self._poller is not None:
            self._poller.cancel()

    def __str__(self) -> str:
        return self.describe()


def _difference(
    old: list[Instance] | None, new: list[Instance]
) -> tuple[list[tuple[str, str]], list[Instance]]:
    """What went (or moved) and what came (or moved to), in instance order: what
    :meth:`InstanceFeed.replace` would report."""
    before = {i.key: i for i in old or ()}
    after = {i.key: i for i in new}
    gone = [k for k, i in sorted(before.items()) if k not in after or after[k].address != i.address]
    came = [
        i for k, i in sorted(after.items()) if k not in before or before[k].address != i.address
    ]
    return gone, came


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
