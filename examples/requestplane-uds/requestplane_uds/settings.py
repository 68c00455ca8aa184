"""The transport's settings; requestplane reads them from ``REQUESTPLANE_UDS_*``."""

from __future__ import annotations

from pathlib import Path

import attrs

from requestplane_core import positive, setting

__all__ = ["UdsSettings"]


@attrs.frozen
class UdsSettings:
    path: Path | None = setting(
        None,
        help="socket file the server listens on; none: a fresh private directory under the "
        "temp dir for each server",
        accepts="a file path, or 'none'",
    )
    max_message_size: int = setting(
        16 * 1024 * 1024,
        help="largest request, response or chunk in bytes; both sides enforce it",
        accepts="an integer > 0",
        check=positive,
    )
    request_timeout: float | None = setting(
        None,
        help="seconds a call may take when the caller passes no timeout; none: no deadline",
        accepts="a number of seconds > 0, or 'none'",
        check=positive,
    )
