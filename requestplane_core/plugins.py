"""Finding and loading plugins: transports, discovery backends, observers.

Transport plugins are modules registered under the ``requestplane.transports`` entry point
group; the entry point's name is the transport's name. Only the plugin serving the selected
mode is imported to serve it; listing imports them all. Discovery plugins
(``requestplane.discovery``) and observing plugins (``requestplane.plugins``) are always
imported: their modules must stay cheap to import. A plugin that fails to load is a warning that
names it and the error (other transports keep working) unless strict mode makes it an error.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .discovery import DiscoverySpec
from .errors import ConfigError, UnknownMode
from .transport import TransportSpec

__all__ = [
    "DISCOVERY_ENTRY_POINT_GROUP",
    "ENTRY_POINT_GROUP",
    "OBSERVER_ENTRY_POINT_GROUP",
    "BrokenPlugin",
    "LoadedDiscovery",
    "LoadedTransport",
    "PluginRegistry",
    "PluginWarning",
    "load_plugins",
]

ENTRY_POINT_GROUP = "requestplane.transports"
#: Plugins that provide no transport (instrumentation): always loaded, all of them.
OBSERVER_ENTRY_POINT_GROUP = "requestplane.plugins"
#: The transports ``requestplane`` installs as extras (``pip install "requestplane[tcp]"``).
EXTRAS = ("tcp", "http", "nats")
#: Plugins that provide discovery backends: always loaded, all of them.
DISCOVERY_ENTRY_POINT_GROUP = "requestplane.discovery"
#: The value of REQUESTPLANE_DISCOVERY that turns discovery off.
DISCOVERY_OFF = "none"


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the others keep working."""


@attrs.frozen
class LoadedTransport:
    """A transport together with where it came from."""

    spec: TransportSpec[Any]
    plugin: str
    distribution: str | None
    version: str | None


@attrs.frozen
class LoadedDiscovery:
    """A discovery backend together with where it came from."""

    spec: DiscoverySpec[Any]
    plugin: str
    distribution: str | None
    version: str | None


@attrs.frozen
class BrokenPlugin:
    name: str
    distribution: str | None
    reason: str


@attrs.frozen
class _Candidate:
    name: str
    distribution: str | None
    version: str | None
    load: Any  # () -> module object to register
    # The name the module is registered under in pluggy: a discovery plugin may share its
    # entry point name with a transport (``nats``) while being another module.
    register_as: str = ""


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class PluginRegistry:
    """The transports that loaded, and the plugins that did not (and why)."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.transports: dict[str, LoadedTransport] = {}
        self.discovery: dict[str, LoadedDiscovery] = {}
        self.broken: list[BrokenPlugin] = []
        self.disabled: list[str] = []
        self.available: list[str] = []

    def transport(self, name: str) -> LoadedTransport:
        """The transport called ``name``, or :class:`UnknownMode` saying what to install."""
        found = self.transports.get(name)
        if found is not None:
            return found
        installed = sorted(set(self.transports) | set(self.available))
        why = [b.reason for b in self.broken if b.name == name]
        hint = (
            f"its plugin failed to load: {why[0]}"
            if why
            else f"the transport {name!r} is disabled by REQUESTPLANE_DISABLE_PLUGINS / "
            "REQUESTPLANE_PLUGINS"
            if name in self.disabled
            else f'install it with: pip install "requestplane[{name}]"'
            if name in EXTRAS
            else f"no installed plugin provides it (a transport plugin is a distribution with "
            f"an entry point in the {ENTRY_POINT_GROUP!r} group)"
        )
        raise UnknownMode(
            f"unknown request plane mode {name!r}; installed: "
            f"{', '.join(installed) or 'none'}; {hint}"
        )

    def discovery_backend(self, name: str) -> LoadedDiscovery:
        """The discovery backend called ``name``, or :class:`ConfigError` listing those
        installed."""
        found = self.discovery.get(name)
        if found is not None:
            return found
        installed = ", ".join(sorted(self.discovery)) or "none"
        raise ConfigError(
            f"REQUESTPLANE_DISCOVERY={name!r} is not an installed discovery backend; "
            f"installed: {installed}; {DISCOVERY_OFF!r} turns discovery off"
            + (
                '; install NATS discovery with: pip install "requestplane[nats]"'
                if name == "nats"
                else ""
            )
        )

    def register_module(
        self, module: ModuleType | object, name: str, distribution: str | None, version: str | None
    ) -> None:
        """Register one plugin module and collect the transports and discovery backends it
        provides."""
        if self.manager.is_registered(module):
            return  # one module behind entry points of two groups
        self.manager.register(module, name=name)
        # A hookimpl that matches no hookspec is almost always a typo: fail at load time (a
        # broken plugin, like one that does not import), leaving the others registered alone.
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError:
            self.manager.unregister(module)
            raise
        origin = (name, distribution, version)
        for spec in self._provided(module, name, "requestplane_transports", TransportSpec):
            self._add(self.transports, "transport", spec, LoadedTransport(spec, *origin))
        for spec in self._provided(module, name, "requestplane_discovery_backends", DiscoverySpec):
            self._add(self.discovery, "discovery backend", spec, LoadedDiscovery(spec, *origin))

    def _provided(self, module: object, name: str, hook: str, kind: type[Any]) -> list[Any]:
        """The records ``module``'s implementation of ``hook`` returns, checked for type."""
        found: list[Any] = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            if impl.plugin is not module:
                continue
            for spec in impl.function() or ():
                if not isinstance(spec, kind):
                    raise ConfigError(
                        f"plugin {name!r} returned {spec!r} from {hook}; "
                        f"expected {kind.__name__} records"
                    )
                found.append(spec)
        return found

    @staticmethod
    def _add(table: dict[str, Any], what: str, spec: Any, loaded: Any) -> None:
        other = table.get(spec.name)
        if other is not None:
            raise ConfigError(
                f"{what} {spec.name!r} is provided twice: by "
                f"{_who(other.plugin, other.distribution)} and by "
                f"{_who(loaded.plugin, loaded.distribution)}; uninstall one of them"
            )
        table[spec.name] = loaded


def _who(plugin: str, distribution: str | None) -> str:
    if distribution:
        return f"distribution {distribution!r} (plugin {plugin})"
    return f"module {plugin!r}"


def _from_entry_point(ep: EntryPoint) -> _Candidate:
    dist = ep.dist
    return _Candidate(ep.name, dist.name if dist else None, dist.version if dist else None, ep.load)


def _candidates(modules: Sequence[str]) -> list[_Candidate]:
    found: dict[str, list[_Candidate]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(_from_entry_point(ep))
    for name, cands in found.items():
        dists = sorted({c.distribution or "?" for c in cands})
        if len(dists) > 1:
            raise ConfigError(
                f"transport {name!r} is provided by more than one distribution: "
                f"{' and '.join(dists)}; uninstall one of them"
            )
    out = [cands[0] for cands in found.values()]
    for ep in entry_points(group=OBSERVER_ENTRY_POINT_GROUP):
        if ep.name not in found:
            out.append(_from_entry_point(ep))
            found[ep.name] = []
    for ep in entry_points(group=DISCOVERY_ENTRY_POINT_GROUP):
        out.append(attrs.evolve(_from_entry_point(ep), register_as=f"discovery:{ep.name}"))
    for module in modules:
        if module not in found:
            out.append(_Candidate(module, None, None, lambda m=module: importlib.import_module(m)))
    return out


def load_plugins(
    *,
    only: str | None = None,
    allow: str | None = None,
    deny: str | None = None,
    strict: bool = False,
) -> PluginRegistry:
    """Load transport plugins (and every observing plugin).

    ``only``: import just the plugin named so (the selected mode); the others are listed as
    available without being imported. ``allow`` / ``deny``: comma-separated plugin names
    (``allow`` may also name importable modules that are not installed distributions).
    ``strict``: a plugin that fails to load raises instead of warning.
    """
    registry = PluginRegistry()
    allowed, denied = _split(allow), set(_split(deny))
    transport_names = _entry_point_names()
    non_entry_point_modules = [m for m in allowed if m not in transport_names]
    for cand in _candidates(non_entry_point_modules):
        if cand.name in denied or (allowed and cand.name not in allowed):
            registry.disabled.append(cand.name)
            continue
        # ``only`` spares transports; a discovery plugin named like one (``nats``) still loads.
        if (
            only is not None
            and cand.name != only
            and cand.name in transport_names
            and not cand.register_as
        ):
            registry.available.append(cand.name)
            continue
        try:
            module = cand.load()
            registry.register_module(
                module, cand.register_as or cand.name, cand.distribution, cand.version
            )
        except ConfigError:
            raise
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"
            if strict:
                raise ConfigError(f"plugin {cand.name!r} failed to load: {cause}") from exc
            registry.broken.append(BrokenPlugin(cand.name, cand.distribution, cause))
            warnings.warn(
                f"requestplane plugin {cand.name!r} failed to load and is skipped: {cause}",
                PluginWarning,
                stacklevel=2,
            )
    return registry


def _entry_point_names() -> set[str]:
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
