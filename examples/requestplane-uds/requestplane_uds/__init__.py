"""requestplane-uds: an example third-party transport over Unix domain sockets.

Select it with ``REQUESTPLANE_MODE=uds``; it registers itself through the entry point
``uds`` in the ``requestplane.transports`` group, so importing this package does nothing.
"""
