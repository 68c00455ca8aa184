"""The shared setting checks: their ranges, and how a setting using one reports a bad value."""

from __future__ import annotations

import math

import attrs
import pytest

import requestplane_core
import requestplane_core.plugin_api
from requestplane_core import (
    ConfigError,
    load_settings,
    non_negative,
    not_blank,
    positive,
    positive_finite,
    setting,
    valid_host,
    valid_port,
)


@pytest.mark.parametrize(
    ("value", "ok"), [(0, True), (1, True), (65535, True), (-1, False), (65536, False)]
)
def test_valid_port(value: int, ok: bool) -> None:
    assert valid_port(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (0.001, True),
        (math.inf, True),
        (0, False),
        (0.0, False),
        (-1, False),
        (math.nan, False),
    ],
)
def test_positive_lets_infinity_through(value: float, ok: bool) -> None:
    assert positive(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (0.001, True), (math.inf, False), (0, False), (-0.5, False), (math.nan, False)],
)
def test_positive_finite_refuses_infinity(value: float, ok: bool) -> None:
    assert positive_finite(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [(0, True), (0.0, True), (7, True), (-1, False), (-0.1, False)]
)
def test_non_negative(value: float, ok: bool) -> None:
    assert non_negative(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("worker-7.internal", True),
        ("", False),
        ("   ", False),
        (" host", False),
        ("host\n", False),
        ("http://host", False),
        ("a/b", False),
    ],
)
def test_valid_host(value: str, ok: bool) -> None:
    assert valid_host(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("x", True), (" x ", True), ("a/b", True), ("", False), (" \t", False)]
)
def test_not_blank(value: str, ok: bool) -> None:
    assert not_blank(value) is ok


def test_every_check_is_public() -> None:
    # On the plugin author's face, and still importable from the package itself.
    import requestplane_core.plugin_api as plugin_api

    for name in (
        "valid_port",
        "positive",
        "positive_finite",
        "non_negative",
        "valid_host",
        "not_blank",
    ):
        assert name in plugin_api.__all__, name
        assert getattr(requestplane_core, name) is getattr(plugin_api, name)


@attrs.frozen
class _Settings:
    port: int = setting(0, help="port", accepts="an integer 0..65535", check=valid_port)
    timeout: float | None = setting(
        None, help="timeout", accepts="a number of seconds > 0, or 'none'", check=positive_finite
    )


def _load(**environ: str) -> _Settings:
    return load_settings(_Settings, prefix="X_", environ=environ)


def test_a_setting_using_a_check_names_what_it_accepts() -> None:
    assert _load(X_PORT="8080", X_TIMEOUT="2.5") == _Settings(port=8080, timeout=2.5)
    with pytest.raises(
        ConfigError, match=r"X_PORT='70000' is out of range: expected an integer 0\.\.65535"
    ):
        _load(X_PORT="70000")
    with pytest.raises(ConfigError, match=r"X_TIMEOUT='inf' is out of range"):
        _load(X_TIMEOUT="inf")


def test_an_unset_optional_setting_is_not_checked() -> None:
    assert _load(X_TIMEOUT="none").timeout is None
