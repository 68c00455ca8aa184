"""The core's conformance suite against the NATS transport and a real nats-server."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from requestplane_core.testing import TransportConformance


class TestNatsConformance(TransportConformance):
    mode = "nats"
    # The NATS server's max_payload (nats-server's default, 1 MiB) is the limit.
    max_payload = 1024 * 1024

    @pytest.fixture
    def transport_settings(self, nats_url: str) -> Mapping[str, object]:
        return {"url": nats_url}
