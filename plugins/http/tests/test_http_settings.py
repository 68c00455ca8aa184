"""Every REQUESTPLANE_HTTP_* variable: parsed, checked, and named when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from requestplane_http.settings import HttpSettings

from requestplane_core import ConfigError, RequestPlane, describe_settings, load_settings

PREFIX = "REQUESTPLANE_HTTP_"

# A malformed or out-of-range value for every setting.
BAD = {
    "host": " ",
    "port": "70000",
    "advertise_host": "a/b",
    "root_path": "v1/rpc",
    "max_message_size": "0",
    "connect_timeout": "-1",
    "request_timeout": "soon",
    "http1_threshold": "lots",
    "http1_pool_size": "-1",
    "max_connections": "0",
    "max_concurrent_streams": "-5",
    "max_resets_per_second": "0",
    "keep_alive_timeout": "0",
    "idle_timeout": "nan",
    "tls_cert_file": "/nonexistent/file.pem",
    "tls_key_file": "/nonexistent/file.pem",
    "tls_client_ca_file": "/nonexistent/file.pem",
    "tls_require_client_cert": "maybe",
    "tls_ca_file": "/nonexistent/file.pem",
    "tls_client_cert_file": "/nonexistent/file.pem",
    "tls_client_key_file": "/nonexistent/file.pem",
}


def test_every_setting_has_help_and_a_bad_value_case() -> None:
    fields = describe_settings(HttpSettings, PREFIX)
    assert {f.name for f in fields} == set(BAD)
    for field in fields:
        assert field.help, field.name
        assert field.env_var == PREFIX + field.name.upper()


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_variable_is_a_config_error_naming_it(name: str) -> None:
    variable = PREFIX + name.upper()
    with pytest.raises(ConfigError, match=variable):
        load_settings(HttpSettings, prefix=PREFIX, environ={variable: BAD[name]})


def test_defaults() -> None:
    settings = load_settings(HttpSettings, prefix=PREFIX, environ={})
    assert (settings.host, settings.port, settings.root_path) == ("127.0.0.1", 0, "/v1/rpc")
    assert settings.max_message_size == 32 * 1024 * 1024
    assert settings.connect_timeout == 10.0
    assert settings.request_timeout is None
    assert not settings.tls


def test_environment_reaches_the_transport() -> None:
    plane = RequestPlane(
        environ={
            "REQUESTPLANE_MODE": "http",
            "REQUESTPLANE_HTTP_PORT": "8080",
            "REQUESTPLANE_HTTP_ROOT_PATH": "/api",
            "REQUESTPLANE_HTTP_REQUEST_TIMEOUT": "2.5",
        }
    )
    assert plane.settings.port == 8080
    assert plane.settings.root_path == "/api"
    assert plane.settings.request_timeout == 2.5


@pytest.mark.parametrize(
    ("given", "needs"),
    [
        ({"TLS_CERT_FILE": "c.pem"}, "TLS_KEY_FILE"),
        ({"TLS_KEY_FILE": "k.pem"}, "TLS_CERT_FILE"),
        ({"TLS_CLIENT_CERT_FILE": "c.pem"}, "TLS_CLIENT_KEY_FILE"),
        ({"TLS_REQUIRE_CLIENT_CERT": "1"}, "TLS_CLIENT_CA_FILE"),
    ],
)
def test_tls_settings_that_only_work_together(
    given: dict[str, str], needs: str, tmp_path: Path
) -> None:
    for name in given.values():
        (tmp_path / name).write_text("")
    environ = {
        PREFIX + key: value if value == "1" else str(tmp_path / value)
        for key, value in given.items()
    }
    with pytest.raises(ConfigError, match=PREFIX + needs):
        load_settings(HttpSettings, prefix=PREFIX, environ=environ)


def test_readme_lists_every_variable_with_its_default() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for field in describe_settings(HttpSettings, PREFIX):
        assert f"`{field.env_var}`" in readme, field.env_var
