"""Shared helpers of the NATS transport's tests (a unique module name: tests dirs have no
__init__.py, so every test directory of the repo shares one import namespace)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from requestplane_nats import NatsSettings
from requestplane_nats.plugin import requestplane_transports

from requestplane_core import Server, TransportClient, load_settings, serve

SPEC = requestplane_transports()[0]


def make_settings(**overrides: Any) -> NatsSettings:
    return load_settings(NatsSettings, prefix="REQUESTPLANE_NATS_", environ={}, overrides=overrides)


@asynccontextmanager
async def nats_server_of(settings: Mapping[str, Any]) -> AsyncIterator[Server]:
    async with serve(SPEC, make_settings(**settings), drain_timeout=5.0) as server:
        yield server


@asynccontextmanager
async def nats_client_of(settings: Mapping[str, Any]) -> AsyncIterator[TransportClient]:
    async with SPEC.client(make_settings(**settings)) as client:
        yield client
