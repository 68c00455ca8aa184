"""requestplane-tcp: the ``tcp`` transport of requestplane.

Use it through ``requestplane_core.RequestPlane(mode="tcp")``; the settings class is the only
public name, for documentation and for settings passed in code.
"""

from .settings import TcpSettings

__all__ = ["TcpSettings"]
