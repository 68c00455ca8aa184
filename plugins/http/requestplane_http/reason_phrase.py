"""HTTP/1.1 status lines with their reason phrase (``HTTP/1.1 200 OK``).

hypercorn hands ``h11`` its responses without a reason, and ``h11`` writes the status line as
``HTTP/1.1 200 `` (the phrase is optional in RFC 9112, but clients such as h2load count every
such response as failed). The standard phrase is filled in as the response goes to ``h11``;
a status without one keeps the empty reason.

Applied to hypercorn's HTTP/1.1 protocol class, process-wide, like :mod:`.hypercorn_fixes`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

__all__ = ["apply_reason_phrases"]

log = logging.getLogger("requestplane.http")

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_applied = False


def apply_reason_phrases() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    import h11
    from hypercorn.protocol.h11 import H11Protocol

    original_send = getattr(H11Protocol, "_send_h11_event", None)
    if original_send is None:
        log.warning("hypercorn: HTTP/1.1 reason phrases not added")
        return

    async def _send_h11_event(self: Any, event: Any) -> None:
        if isinstance(event, (h11.Response, h11.InformationalResponse)) and not event.reason:
            phrase = _PHRASES.get(event.status_code)
            if phrase:
                event = type(event)(
                    headers=event.headers, status_code=event.status_code, reason=phrase
                )
        await original_send(self, event)

    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]
