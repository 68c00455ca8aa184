"""Fixtures of the fleet tests: the transport the workers serve on and, for NATS, a real
nats-server. ``anyio_backend`` (asyncio and trio) comes from ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from requestplane_core import load_plugins


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    nats = pytest.importorskip("requestplane_nats")
    if nats.find_nats_server() is None:
        pytest.skip("nats-server is not installed (pip install requestplane-nats[server])")
    with nats.NatsServerProcess() as server:
        yield server.url


@pytest.fixture(params=["tcp", "http", "nats", "uds"])
def transport_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a fleet (workers and caller) on one transport."""
    mode = str(request.param)
    if mode not in load_plugins(only=mode).transports:
        pytest.skip(f"the {mode} transport is not installed")
    env = {"REQUESTPLANE_MODE": mode}
    if mode == "nats":
        env["REQUESTPLANE_NATS_URL"] = request.getfixturevalue("nats_url")
    return env
