"""The ``file`` discovery backend: the conformance kit, then what only a directory of record
files can get wrong (corrupt files, an unusable directory, deleted records, zombies)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from requestplane_core.testing import DiscoveryConformance


class TestFileDiscovery(DiscoveryConformance):
    backend_name = "file"

    @pytest.fixture
    def discovery_settings(self, tmp_path: Path) -> Mapping[str, object]:
        return {"dir": tmp_path / "discovery"}
