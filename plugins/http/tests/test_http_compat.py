"""The reaches of requestplane_http/_compat.py into hypercorn's, h2's and priority's private
parts find what they look for on the installed versions: an upgrade that moves them fails
here, loudly, instead of silently bringing back the bugs they repair."""

from __future__ import annotations

import h2.connection
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from requestplane_http._compat import (
    apply_cancelled_read_fix,
    apply_hypercorn_fixes,
    apply_reason_phrases,
    h2_connection_class,
    missing_private_reaches,
)


def test_the_installed_versions_have_everything_the_reaches_need() -> None:
    assert missing_private_reaches() == []
    apply_hypercorn_fixes()  # once patched, the originals are still what is checked
    assert missing_private_reaches() == []


def test_the_client_uses_the_changed_h2_connection() -> None:
    cls = h2_connection_class()
    assert cls is not h2.connection.H2Connection
    assert issubclass(cls, h2.connection.H2Connection)
    assert "_local_settings_acked" in vars(cls)
    assert "_receive_goaway_frame" in vars(cls)


def test_the_hypercorn_repairs_are_applied() -> None:
    from hypercorn.asyncio.tcp_server import TCPServer as AsyncioTCPServer
    from hypercorn.trio.tcp_server import TCPServer as TrioTCPServer

    apply_hypercorn_fixes()
    apply_reason_phrases()
    apply_cancelled_read_fix()
    for server_class in (AsyncioTCPServer, TrioTCPServer):
        assert server_class._read_data.__module__ == "requestplane_http._compat"
    for patched in (H2Protocol.__init__, H2Protocol.handle, H2Protocol._close_stream):
        assert patched.__module__ == "requestplane_http._compat", patched
    assert H11Protocol._send_h11_event.__module__ == "requestplane_http._compat"
