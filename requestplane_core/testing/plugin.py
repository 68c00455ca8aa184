"""pytest plugin: run the conformance kit from a transport author's ``conftest.py``.

Installed with ``requestplane`` (pytest's ``pytest11`` entry point), so it is active wherever
requestplane is installed, and idle unless a ``conftest.py`` names a transport::

    # conftest.py of your transport's tests
    requestplane_transport = "uds"
    requestplane_settings = {"path": "/tmp/x.sock"}   # optional setting overrides

or provides the settings as a fixture (when they depend on another fixture)::

    @pytest.fixture
    def requestplane_settings(broker): return {"url": broker.url}

Every conformance case then runs against that transport, on asyncio and trio, collected
under that ``conftest.py``. Subclassing :class:`~requestplane_core.testing.TransportConformance`
in a test module does the same, explicitly.

A discovery backend's ``conftest.py`` does the same for the discovery kit::

    requestplane_discovery = "mine"
    requestplane_discovery_settings = {"url": "..."}   # or a fixture of that name

and may provide the kit's optional fixtures under ``requestplane_``-prefixed names
(``requestplane_discovery_store_restart``, ``requestplane_expected_instances`` with
``requestplane_discovery_read_only = True``, ``requestplane_discovery_transport``).
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ..discovery import Instance
from .conformance import TransportConformance
from .discovery_conformance import DiscoveryConformance, StoreRestart


def _given(request: pytest.FixtureRequest, name: str, default: Any) -> Any:
    """The conftest's fixture ``name`` if it has one, else ``default``."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return default


def _discovery_class(conftest: Any) -> type:
    settings = getattr(conftest, "requestplane_discovery_settings", {})
    if callable(settings):
        settings = {}  # a fixture: read per test below

    class TestRequestplaneDiscoveryConformance(DiscoveryConformance):
        @pytest.fixture
        def discovery_settings(self, request: pytest.FixtureRequest) -> Mapping[str, object]:
            return dict(_given(request, "requestplane_discovery_settings", settings))

        @pytest.fixture
        def discovery_store_restart(self, request: pytest.FixtureRequest) -> StoreRestart | None:
            restart: StoreRestart | None = _given(
                request, "requestplane_discovery_store_restart", None
            )
            return restart

        @pytest.fixture
        def expected_instances(self, request: pytest.FixtureRequest) -> Sequence[Instance]:
            found: Sequence[Instance] = _given(request, "requestplane_expected_instances", ())
            return found

        @pytest.fixture
        def discovery_transport(
            self, request: pytest.FixtureRequest
        ) -> tuple[str, Mapping[str, object]]:
            transport: tuple[str, Mapping[str, object]] = _given(
                request, "requestplane_discovery_transport", ("tcp", {"port": 0})
            )
            return transport

    TestRequestplaneDiscoveryConformance.backend_name = str(conftest.requestplane_discovery)
    TestRequestplaneDiscoveryConformance.read_only = bool(
        getattr(conftest, "requestplane_discovery_read_only", False)
    )
    return TestRequestplaneDiscoveryConformance


def _conformance_class(mode: str, settings: Mapping[str, object]) -> type:
    class TestRequestplaneConformance(TransportConformance):
        @pytest.fixture
        def transport_settings(self, request: pytest.FixtureRequest) -> Mapping[str, object]:
            try:
                given: Mapping[str, object] = request.getfixturevalue("requestplane_settings")
            except pytest.FixtureLookupError:
                given = settings
            return dict(given)

    TestRequestplaneConformance.mode = mode
    return TestRequestplaneConformance


class ConformanceModule(pytest.Module):
    """The kit, collected as if it were a test module sitting at the ``conftest.py``."""

    conftest: Any

    def _getobj(self) -> types.ModuleType:
        named = getattr(self.conftest, "requestplane_transport", None) or getattr(
            self.conftest, "requestplane_discovery", None
        )
        module = types.ModuleType(f"requestplane_conformance_{named}")
        if getattr(self.conftest, "requestplane_transport", None):
            module.TestRequestplaneConformance = _conformance_class(  # type: ignore[attr-defined]
                str(self.conftest.requestplane_transport),
                getattr(self.conftest, "requestplane_settings", {}),
            )
        if getattr(self.conftest, "requestplane_discovery", None):
            module.TestRequestplaneDiscoveryConformance = _discovery_class(  # type: ignore[attr-defined]
                self.conftest
            )
        return module


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name != "conftest.py":
        return None
    conftest = parent.config.pluginmanager.get_plugin(str(file_path))
    if not getattr(conftest, "requestplane_transport", None) and not getattr(
        conftest, "requestplane_discovery", None
    ):
        return None
    node = ConformanceModule.from_parent(parent, path=file_path)
    node.conftest = conftest
    return node
