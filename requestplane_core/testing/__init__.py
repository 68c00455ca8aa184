"""The transport conformance kit: one suite every transport must pass, on asyncio and trio.

Subclass :class:`TransportConformance` in a test module of your transport::

    from requestplane_core.testing import TransportConformance

    class TestMyTransport(TransportConformance):
        mode = "mine"
        settings = {"port": 0}

See ``CONTRIBUTING.md`` for the whole tutorial.
"""

import pytest

# pytest rewrites asserts only in test modules and in modules registered before they are
# imported; without this, a failing case of an installed kit says only "AssertionError".
pytest.register_assert_rewrite(
    f"{__name__}.conformance", f"{__name__}.bounds", f"{__name__}.discovery_conformance"
)

from .conformance import TransportConformance  # noqa: E402 (after the registration)
from .discovery_conformance import DiscoveryConformance  # noqa: E402

__all__ = ["TransportConformance"]
__all__ += ["DiscoveryConformance"]
