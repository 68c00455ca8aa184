"""The discovery kit run the way a third party runs it: a ``conftest.py`` naming the backend,
in a pytest run of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFTEST = """
import pytest

requestplane_discovery = "file"

@pytest.fixture
def requestplane_discovery_settings(tmp_path):
    return {"dir": tmp_path / "records"}
"""


def test_a_conftest_naming_a_discovery_backend_runs_the_kit(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-k",
            "register_list_watch or restart",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    # Both cases, on asyncio and trio; the store restart not applicable to files.
    assert "2 passed, 2 skipped" in report, report
    assert "not applicable: 'file' has no store to restart" in report, report
