import pytest

# These two lines run requestplane's whole conformance kit against this transport, on
# asyncio and trio (requestplane_core.testing's pytest plugin collects it from here).
requestplane_transport = "uds"
requestplane_settings: dict[str, object] = {}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
