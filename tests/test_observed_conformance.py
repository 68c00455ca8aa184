"""The whole kit over TCP with the installed observing plugins active (in the test
environment, the repo's OpenTelemetry example): the instrumented path keeps every contract."""

from requestplane_core.testing import TransportConformance


class TestObservedTcpConformance(TransportConformance):
    mode = "tcp"
    observed = True
