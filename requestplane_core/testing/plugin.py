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
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from .conformance import TransportConformance


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
        module = types.ModuleType(
            f"requestplane_conformance_{self.conftest.requestplane_transport}"
        )
        module.TestRequestplaneConformance = _conformance_class(  # type: ignore[attr-defined]
            str(self.conftest.requestplane_transport),
            getattr(self.conftest, "requestplane_settings", {}),
        )
        return module


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name != "conftest.py":
        return None
    conftest = parent.config.pluginmanager.get_plugin(str(file_path))
    if not getattr(conftest, "requestplane_transport", None):
        return None
    node = ConformanceModule.from_parent(parent, path=file_path)
    node.conftest = conftest
    return node
