"""HTTP/2 streams the client opened and reset within one read are never started.

Starting a stream starts its handler, and a handler reset at once still has to be unwound:
that is what made "rapid reset" expensive (see :mod:`.reset_budget`). A stream whose
HEADERS and RST_STREAM arrive together was cancelled before the server could have done
anything for it, so its events are dropped before hypercorn sees them and no handler runs.
The reset itself stays in, so that it is counted against the connection's budget (and
hypercorn, which knows no such stream, ignores it).
"""

from __future__ import annotations

import h2.events

__all__ = ["drop_stillborn_streams"]


def drop_stillborn_streams(
    events: list[h2.events.Event],
) -> tuple[list[h2.events.Event], list[h2.events.DataReceived]]:
    """The events to hand on, and the dropped DATA (its flow control is still owed)."""
    reset = {e.stream_id for e in events if isinstance(e, h2.events.StreamReset)}
    if not reset:
        return events, []
    stillborn = {
        e.stream_id
        for e in events
        if isinstance(e, h2.events.RequestReceived) and e.stream_id in reset
    }
    if not stillborn:
        return events, []
    kept: list[h2.events.Event] = []
    data: list[h2.events.DataReceived] = []
    for event in events:
        if isinstance(event, h2.events.StreamReset) or (
            getattr(event, "stream_id", None) not in stillborn
        ):
            kept.append(event)
        elif isinstance(event, h2.events.DataReceived):
            data.append(event)
    return kept, data
