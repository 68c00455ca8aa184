"""ruff (lint and format) and mypy --strict stay clean on the core and every distribution in
the repo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def packages() -> list[str]:
    found = [str(ROOT / "requestplane_core")]
    for pyproject in sorted(
        [
            *ROOT.glob("plugins/*/pyproject.toml"),
            *ROOT.glob("examples/*/pyproject.toml"),
            *ROOT.glob("benchmarks/*/pyproject.toml"),
        ]
    ):
        found += [str(p.parent) for p in pyproject.parent.glob("requestplane_*/__init__.py")]
    return found


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *packages()],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "<!-- main-command -->" in readme
    block = re.search(
        r"<!-- test-command -->\n```sh\n(.*?)\n```\n<!-- /test-command -->", readme, re.S
    )
    assert block, "README.md has no ```sh block between the test-command markers"
    # .ci/run --print shows the command it extracted and would run, without running it.
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == block[1].strip()
