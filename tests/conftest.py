import sys
from pathlib import Path

import pytest

# The test-only `fixture` plugin, registered for this run only (not installed).
sys.path.insert(0, str(Path(__file__).parent / "fixture_plugin"))
from fixture_plugin_path import activate

activate()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
