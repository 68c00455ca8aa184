"""CONTRIBUTING.md quotes the example plugins; each quoted block must still be in its file,
word for word, so that the tutorial and the code it teaches never drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "CONTRIBUTING.md"
EXCERPT = re.compile(r"<!-- excerpt: (?P<path>\S+) -->\n```[a-z]*\n(?P<code>.*?)\n```", re.S)


def excerpts() -> list[tuple[str, str]]:
    if not GUIDE.is_file():  # the example copied out of the repository
        return []
    return [(m["path"], m["code"]) for m in EXCERPT.finditer(GUIDE.read_text())]


def test_the_guide_quotes_the_examples() -> None:
    if not GUIDE.is_file():
        pytest.skip("not inside the requestplane repository")
    paths = {path for path, _ in excerpts()}
    assert "examples/requestplane-uds/requestplane_uds/server.py" in paths
    assert "examples/requestplane-otel/requestplane_otel/plugin.py" in paths


@pytest.mark.parametrize(("path", "code"), excerpts())
def test_excerpt_is_verbatim(path: str, code: str) -> None:
    source = (REPO / path).read_text()
    assert code in source, f"CONTRIBUTING.md quotes {path}, which no longer contains:\n{code}"
