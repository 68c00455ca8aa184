"""The discovery backends that ship with requestplane: ``file`` (the embedded default) and
``static``. They are plugins like any other, registered through the package's own
``requestplane.discovery`` entry point; nothing else in the core imports them."""
