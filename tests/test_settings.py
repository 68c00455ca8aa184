"""Settings: typed parsing from the environment, clear errors, overrides from code."""

from __future__ import annotations

from pathlib import Path

import pytest
from requestplane_fixture import FixtureSettings

from requestplane_core import ConfigError, describe_settings, load_settings

P = "REQUESTPLANE_FIXTURE_"


def load(env: dict[str, str], **overrides: object) -> FixtureSettings:
    return load_settings(FixtureSettings, prefix=P, environ=env, overrides=overrides)


def test_defaults_without_environment() -> None:
    assert load({}) == FixtureSettings()


def test_every_type_parses() -> None:
    s = load(
        {
            P + "HOST": "0.0.0.0",
            P + "PORT": "8080",
            P + "RATIO": "1.5",
            P + "VERBOSE": "yes",
            P + "CERT": "/tmp/c.pem",
            P + "TIMEOUT": "none",
            P + "TOKEN": "s3cret",
        }
    )
    assert (s.host, s.port, s.ratio, s.verbose) == ("0.0.0.0", 8080, 1.5, True)
    assert s.cert == Path("/tmp/c.pem") and s.timeout is None and s.token == "s3cret"


@pytest.mark.parametrize(
    ("var", "value", "accepts"),
    [
        ("PORT", "eighty", "an integer 0..65535"),
        ("PORT", "70000", "an integer 0..65535"),
        ("PORT", "-1", "an integer 0..65535"),
        ("RATIO", "fast", "a number"),
        ("RATIO", "nan", "a number"),
        ("VERBOSE", "maybe", "a boolean"),
        ("TIMEOUT", "soon", "a number, or 'none'"),
    ],
)
def test_malformed_value_names_variable_value_and_accepted(
    var: str, value: str, accepts: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load({P + var: value})
    message = str(info.value)
    assert P + var in message
    assert repr(value) in message
    assert accepts in message


def test_secret_value_never_shown() -> None:
    with pytest.raises(ConfigError) as info:
        load({}, token=12345)
    assert "12345" not in str(info.value)
    assert "<hidden>" in str(info.value)


def test_code_overrides_win_over_environment() -> None:
    s = load({P + "PORT": "1000", P + "HOST": "10.0.0.1"}, port=2000)
    assert s.port == 2000 and s.host == "10.0.0.1"


def test_string_overrides_are_parsed_like_the_environment() -> None:
    assert load({}, port="3000", verbose="off").port == 3000


def test_override_of_wrong_type_or_range_is_an_error() -> None:
    with pytest.raises(ConfigError, match="setting 'port' \\(passed in code\\)"):
        load({}, port=1.5)
    # bool is an int subclass in Python; a port of True (1) is a mistake, not a port.
    for name in ("port", "ratio", "timeout"):
        with pytest.raises(ConfigError, match=f"setting '{name}' .*=True has the wrong type"):
            load({}, **{name: True})
    with pytest.raises(ConfigError, match="out of range"):
        load({}, port=99999)


def test_unknown_override_lists_accepted_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*prot.*accepted: cert, host"):
        load({}, prot=1)


def test_describe_lists_variables_defaults_and_hides_nothing_but_secrets() -> None:
    fields = {f.name: f for f in describe_settings(FixtureSettings, P)}
    assert fields["port"].env_var == "REQUESTPLANE_FIXTURE_PORT"
    assert fields["port"].default == 0
    assert fields["port"].accepts == "an integer 0..65535"
    assert fields["token"].secret and not fields["host"].secret


def test_secret_never_in_the_settings_repr() -> None:
    s = load({P + "TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(s)
    assert "token='<hidden>'" in repr(s)
