"""The core's transport conformance suite, run against the tcp transport."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from requestplane_core.testing import TransportConformance


class TestTcpConformance(TransportConformance):
    mode = "tcp"
    settings: ClassVar[Mapping[str, object]] = {}
