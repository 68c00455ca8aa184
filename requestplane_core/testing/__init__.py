"""The transport conformance kit: one suite every transport must pass, on asyncio and trio.

Subclass :class:`TransportConformance` in a test module of your transport::

    from requestplane_core.testing import TransportConformance

    class TestMyTransport(TransportConformance):
        mode = "mine"
        settings = {"port": 0}

See ``CONTRIBUTING.md`` for the whole tutorial.
"""

from .conformance import TransportConformance
from .discovery_conformance import DiscoveryConformance

__all__ = ["TransportConformance"]
__all__ += ["DiscoveryConformance"]
