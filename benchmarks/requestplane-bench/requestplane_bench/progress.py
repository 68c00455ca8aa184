"""A one-line progress bar on a terminal (plain text, redrawn in place)."""

from __future__ import annotations

import shutil
from typing import TextIO

__all__ = ["ProgressBar"]

_WIDTH = 24


class ProgressBar:
    """Draws on ``stream`` only if ``enabled`` (the caller decides: a tty, not ``--json``)."""

    def __init__(self, stream: TextIO, *, enabled: bool, total: int) -> None:
        self._stream = stream
        self.enabled = enabled
        self._total = total
        self._drawn = 0

    def show(self, index: int, label: str, fraction: float, detail: str = "") -> None:
        """Case ``index`` (from 1) of the total is ``fraction`` (0..1) done."""
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * _WIDTH)
        line = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {index}/{self._total} {label}"
        if detail:
            line += f"  {detail}"
        columns = shutil.get_terminal_size((80, 24)).columns - 1
        line = line[:columns]
        self._stream.write("\r" + line.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(line)

    def clear(self) -> None:
        """Erase the bar so that normal output starts on a clean line."""
        if self.enabled and self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0
