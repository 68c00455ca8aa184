"""The reaches of requestplane_nats/_compat.py into nats-py's private parts find what they
look for on the installed nats-py: an upgrade that moves them fails here, loudly, instead of
silently losing requests that race an unregistration."""

from __future__ import annotations

from requestplane_nats._compat import SUBSCRIPTION_INTERNALS, missing_private_reaches


def test_the_installed_nats_py_has_everything_the_reaches_need() -> None:
    assert missing_private_reaches() == []
    assert SUBSCRIPTION_INTERNALS
