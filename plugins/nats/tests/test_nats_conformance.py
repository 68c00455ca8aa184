"""The core's conformance suite against the NATS transport and a real nats-server."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from requestplane_core.testing import TransportConformance


class TestNatsConformance(TransportConformance):
    # The kit sets max_message_size to 2 MiB, over nats-server's default max_payload (1 MiB):
    # its size cases go in parts.
    mode = "nats"

    @pytest.fixture
    def transport_settings(self, nats_url: str) -> Mapping[str, object]:
        return {"url": nats_url}
