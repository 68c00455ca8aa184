"""How many of its HTTP/2 streams a client may reset, per connection: the defence against
"rapid reset" (CVE-2023-44487).

A stream the client resets no longer counts against the concurrent stream limit, but its
handler has been started and has to be unwound. A client that opens and resets streams in a
loop therefore has the server start handlers without bound, at no cost to itself: 5,000
HEADERS+RST_STREAM pairs on one connection cost the server 2.2 s of CPU on trio (20,000: 9 s),
and on asyncio the 4,000 streams still unwinding overflowed the stream scheduler, which
killed the connection with a traceback and without a GOAWAY.

Each connection gets a token bucket: it may reset as many streams at once as it may have open
(``max_concurrent_streams``: a client cancelling every call it has in flight is normal), and
``max_resets_per_second`` more every second. Past that the server answers GOAWAY
(ENHANCE_YOUR_CALM) and closes the connection, as nginx, Go and Envoy do in their ways. An
attacker thus gets out of one connection at most the work a well-behaved client at the stream
limit would have caused, and has to pay for a new connection to go on.
"""

from __future__ import annotations

import math
import time

import attrs
import h2.events

__all__ = ["ResetBudget"]


@attrs.define
class ResetBudget:
    per_second: float
    burst: float
    _tokens: float = attrs.field(init=False)
    _stamp: float = attrs.field(init=False, factory=time.monotonic)
    resets: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._tokens = self.burst

    def admit(self, events: list[h2.events.Event]) -> tuple[list[h2.events.Event], bool]:
        """The events to handle, and whether the budget ran out (at the first event left
        out: the reset one too many). Sets ``resets`` to the resets among ``events``."""
        self.resets = 0
        if self.per_second == math.inf:
            return events, False
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
        self._stamp = now
        for index, event in enumerate(events):
            if isinstance(event, h2.events.StreamReset):
                self.resets += 1
                if self._tokens < 1:
                    return events[:index], True
                self._tokens -= 1
        return events, False
