"""requestplane's HTTP transport: ``REQUESTPLANE_MODE=http``.

The transport is used through requestplane's public API; this package only exports its
settings class, for code that builds settings directly.
"""

from .settings import HttpSettings

__all__ = ["HttpSettings"]
__version__ = "0.1.0"
