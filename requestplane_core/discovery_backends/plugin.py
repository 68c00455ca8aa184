"""The hook that provides the built-in discovery backends."""

from __future__ import annotations

from ..discovery import DiscoverySpec
from ..hookspecs import hookimpl


@hookimpl
def requestplane_discovery_backends() -> list[DiscoverySpec[object]]:
    # Imported here so that loading plugins stays cheap; the modules are small anyway.
    from .file_backend import FileDiscovery, FileDiscoverySettings
    from .static_backend import StaticDiscovery, StaticDiscoverySettings

    file_spec: DiscoverySpec[FileDiscoverySettings] = DiscoverySpec(
        name="file",
        description="instances as files in a local directory (one machine, no service)",
        settings=FileDiscoverySettings,
        backend=FileDiscovery,
    )
    static_spec: DiscoverySpec[StaticDiscoverySettings] = DiscoverySpec(
        name="static",
        description="a fixed list of name=address pairs (read-only)",
        settings=StaticDiscoverySettings,
        backend=StaticDiscovery,
    )
    return [file_spec, static_spec]  # type: ignore[list-item]
