"""The conformance suite and the tests of this transport's own machinery (native request
tasks, client deadlines on loop timers, gathered frames, the protocol reader, closing idle
and stalled connections) once more on uvloop, which the benchmarks use and whose tasks,
futures, timers and transports are its own C implementations. (The core's low-level fast
paths themselves, waiters, timers and request tasks, are tested on uvloop in
tests/test_lowlevel_*.py.)"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from requestplane_core.testing import TransportConformance

if importlib.util.find_spec("uvloop") is None:
    pytest.skip("uvloop is not installed", allow_module_level=True)

from test_tcp_compat import *  # noqa: F403
from test_tcp_deadlines import *  # noqa: F403
from test_tcp_idle_timeout import *  # noqa: F403
from test_tcp_large_frames import *  # noqa: F403
from test_tcp_protocol_reader import *  # noqa: F403
from test_tcp_request_tasks import *  # noqa: F403

UVLOOP = ("asyncio", {"use_uvloop": True})


@pytest.fixture
def anyio_backend() -> Any:
    return UVLOOP


class TestTcpConformanceOnUvloop(TransportConformance):
    mode = "tcp"
    settings: ClassVar[Mapping[str, object]] = {}

    @pytest.fixture
    def anyio_backend(self) -> Any:
        return UVLOOP


@pytest.mark.anyio
async def test_this_module_runs_on_uvloop() -> None:
    import asyncio

    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
