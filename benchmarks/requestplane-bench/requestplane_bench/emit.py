"""The workers' side of the line protocol: one JSON object per line on standard output."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["emit"]


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()
