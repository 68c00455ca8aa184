"""Fixtures of the reliability scenarios: the transport under test and, for NATS, a real
nats-server. ``anyio_backend`` (asyncio and trio) comes from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_helpers import MODES

from requestplane_core import load_plugins


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name not in load_plugins(only=name).transports:
        pytest.skip(f"the {name} transport is not installed")
    return name


@pytest.fixture(scope="session")
def nats_server() -> Iterator[object]:
    """One nats-server for the session (the NATS plugin's public helper runs it)."""
    nats = pytest.importorskip("requestplane_nats")
    if nats.find_nats_server() is None:
        pytest.skip("nats-server is not installed (pip install requestplane-nats[server])")
    with nats.NatsServerProcess() as server:
        yield server


@pytest.fixture
def settings(mode: str, request: pytest.FixtureRequest) -> dict[str, object]:
    """Transport settings for servers and clients of ``mode`` (NATS: the session's server)."""
    if mode == "nats":
        return {"url": request.getfixturevalue("nats_server").url}
    return {}
