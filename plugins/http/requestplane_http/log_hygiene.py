"""Keep header values out of the logs.

hpack (under h2, on both our client and hypercorn's server) logs every header name and value
it encodes or decodes at DEBUG. requestplane headers carry credentials and trace tokens, so an
operator who turns the root logger to DEBUG would get them in clear. Unless the application
configured the ``hpack`` logger itself, it is raised to INFO (hpack logs nothing above DEBUG).
"""

from __future__ import annotations

import logging

__all__ = ["quiet_hpack"]


def quiet_hpack() -> None:
    hpack_log = logging.getLogger("hpack")
    if hpack_log.level == logging.NOTSET:
        hpack_log.setLevel(logging.INFO)
