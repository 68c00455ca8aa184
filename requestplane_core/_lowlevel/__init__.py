"""The implementation of :mod:`requestplane_core.lowlevel`; import from there."""
