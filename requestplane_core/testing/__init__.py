"""pytest plugin: the transport conformance kit (filled in below)."""
