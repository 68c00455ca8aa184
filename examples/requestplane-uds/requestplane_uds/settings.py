"""The transport's settings; requestplane reads them from ``REQUESTPLANE_UDS_*``."""

from __future__ import annotations

from pathlib import Path

import attrs

from requestplane_core import setting
from requestplane_core.plugin_api import max_message_size_setting, request_timeout_setting

__all__ = ["UdsSettings"]


@attrs.frozen
class UdsSettings:
    path: Path | None = setting(
        None,
        help="socket file the server listens on; none: a fresh private directory under the "
        "temp dir for each server",
        accepts="a file path, or 'none'",
    )
    max_message_size: int = max_message_size_setting(
        16 * 1024 * 1024,
        help="largest request, response or chunk in bytes; both sides enforce it",
    )
    request_timeout: float | None = request_timeout_setting()
