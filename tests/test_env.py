"""Every variable of the core and of every installed transport, malformed, is a clear error."""

from __future__ import annotations

import pytest

from requestplane_core import ConfigError, CoreSettings, RequestPlane, describe_settings
from requestplane_core.manager import installed_transports

MALFORMED = {
    "an integer": "twelve",
    "a number": "fast",
    "a boolean": "maybe",
}


def malformed_value(type_name: str) -> str | None:
    for prefix, value in MALFORMED.items():
        if type_name.startswith(prefix):
            return value
    return None  # a free-form string: nothing is malformed


def cases() -> list[tuple[str, str, str]]:
    out = [
        ("tcp", f.env_var, value)
        for f in describe_settings(CoreSettings, "REQUESTPLANE_")
        if (value := malformed_value(f.type_name)) is not None
    ]
    for name, loaded in sorted(installed_transports().transports.items()):
        if name == "fixture":
            continue  # serves nothing; its settings are tested in test_settings.py
        prefix = f"REQUESTPLANE_{name.upper()}_"
        for f in describe_settings(loaded.spec.settings, prefix):
            value = malformed_value(f.type_name)
            if value is not None:
                out.append((name, f.env_var, value))
    return out


@pytest.mark.parametrize(("mode", "variable", "value"), cases())
def test_malformed_variable_is_named(mode: str, variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        RequestPlane(environ={"REQUESTPLANE_MODE": mode, variable: value})
    assert variable in str(info.value)
    assert "expected" in str(info.value)


def test_every_transport_is_checked() -> None:
    modes = {mode for mode, _, _ in cases()}
    assert {"tcp", "http", "nats"} <= modes


def test_ranges_are_checked_too() -> None:
    for variable, value in [
        ("REQUESTPLANE_TCP_PORT", "70000"),
        ("REQUESTPLANE_DRAIN_TIMEOUT", "0"),
        ("REQUESTPLANE_MAX_INFLIGHT", "-1"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            RequestPlane(environ={"REQUESTPLANE_MODE": "tcp", variable: value})
