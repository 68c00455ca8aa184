"""The ``static`` discovery backend: the read-only part of the conformance kit, and the
malformed lists it must refuse."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from requestplane_core import ConfigError, RequestPlane
from requestplane_core.discovery import Instance
from requestplane_core.testing import DiscoveryConformance

pytestmark = pytest.mark.anyio

LISTED = "kit/pair=tcp://10.0.0.7:5000/kit/pair, kit/pair=tcp://10.0.0.8:5000/kit/pair"
IN_FILE = (
    "# the fleet\nkit=http://10.0.0.9:8000/kit  # one\n\nkit/pair=tcp://10.0.0.7:5000/kit/pair\n"
)


def _expected(name: str, address: str, transport: str) -> Instance:
    # The documented id: derived from the address, the same in every process.
    digest = hashlib.sha256(address.encode()).hexdigest()[:16]
    return Instance(name, digest, transport, address)


class TestStaticDiscovery(DiscoveryConformance):
    backend_name = "static"
    read_only = True
    ttl_setting = None

    @pytest.fixture
    def discovery_settings(self, tmp_path: Path) -> Mapping[str, object]:
        listing = tmp_path / "fleet.txt"
        listing.write_text(IN_FILE)
        return {"instances": LISTED, "file": listing}

    @pytest.fixture
    def expected_instances(self) -> Sequence[Instance]:
        # The pair listed in both places is one instance.
        return [
            _expected("kit/pair", "tcp://10.0.0.7:5000/kit/pair", "tcp"),
            _expected("kit/pair", "tcp://10.0.0.8:5000/kit/pair", "tcp"),
            _expected("kit", "http://10.0.0.9:8000/kit", "http"),
        ]

    @pytest.fixture
    def bad_discovery_settings(self, tmp_path: Path) -> Sequence[Mapping[str, object]]:
        return [
            {"instances": "kit/pair"},
            {"instances": "kit=not-an-address"},
            {"instances": "bad name=tcp://10.0.0.7:5000/x"},
            {"file": tmp_path / "missing.txt"},
            {"kit_no_such_setting": "1"},
        ]


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        ("echo", ["REQUESTPLANE_DISCOVERY_STATIC_INSTANCES", "'echo'", "name=address"]),
        ("echo=tcp://h:1/echo,=tcp://h:2/x", ["REQUESTPLANE_DISCOVERY_STATIC_INSTANCES", "''"]),
        ("a/b/c/d=tcp://h:1/x", ["'a/b/c/d=tcp://h:1/x'", "endpoint name"]),
        ("echo=nowhere", ["REQUESTPLANE_DISCOVERY_STATIC_INSTANCES", "echo=nowhere"]),
    ],
)
async def test_malformed_pairs_name_the_variable_and_the_pair(
    pairs: str, words: list[str], anyio_backend: str
) -> None:
    plane = RequestPlane(environ={}, discovery="static", discovery_settings={"instances": pairs})
    with pytest.raises(ConfigError) as info:
        async with plane:
            plane.discovery()
    for word in words:
        assert word in str(info.value), f"expected {word!r} in: {info.value}"


async def test_malformed_pair_in_the_file_names_the_file(
    tmp_path: Path, anyio_backend: str
) -> None:
    listing = tmp_path / "fleet.txt"
    listing.write_text("echo=tcp://h:1/echo\n\necho tcp://h:2/echo\n")
    plane = RequestPlane(environ={}, discovery="static", discovery_settings={"file": listing})
    with pytest.raises(ConfigError) as info:
        async with plane:
            plane.discovery()
    assert "REQUESTPLANE_DISCOVERY_STATIC_FILE" in str(info.value)
    assert str(listing) in str(info.value)
