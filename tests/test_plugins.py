"""Plugin discovery through real entry points, plugin controls and their error messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from requestplane_core import ConfigError, PluginWarning, RequestPlane, UnknownMode, load_plugins
from requestplane_core.plugins import PluginRegistry


def fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """Write an installed distribution's metadata (what pip leaves in site-packages)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[requestplane.transports]\n{lines}\n")


def plugin_module(root: Path, module: str, body: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))


PROVIDES = """
    import attrs
    from requestplane_core import TransportSpec, hookimpl

    @attrs.frozen
    class S:
        pass

    def nope(settings):
        raise NotImplementedError

    @hookimpl
    def requestplane_transports():
        return [TransportSpec(name={name!r}, description="test", settings=S,
                              server=nope, client=nope)]
"""


def test_installed_distribution_is_discovered_through_its_entry_point() -> None:
    registry = load_plugins()
    loaded = registry.transport("fixture")
    assert loaded.distribution == "requestplane-fixture"
    assert loaded.version == "0.0.1"
    assert loaded.spec.description.startswith("discovery test fixture")


def test_selecting_a_mode_imports_only_that_plugin() -> None:
    code = (
        "import sys\n"
        "from requestplane_core import load_plugins\n"
        "r = load_plugins(only='something-else')\n"
        "print('requestplane_fixture' in sys.modules, 'fixture' in r.available)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_two_distributions_claiming_one_name_is_an_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "requestplane-impostor", {"fixture": "impostor_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_plugins()
    assert "requestplane-fixture" in str(info.value)
    assert "requestplane-impostor" in str(info.value)


def test_two_modules_providing_one_transport_is_an_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_module(tmp_path, "second_fixture", PROVIDES.format(name="fixture"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"provided twice.*requestplane-fixture.*second_fixture"):
        load_plugins(allow="fixture,second_fixture")


def test_broken_plugin_is_a_warning_and_the_others_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "requestplane-broken", {"broken": "no_such_module_xyz"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginWarning, match="'broken' failed to load.*no_such_module_xyz"):
        registry = load_plugins()
    assert "fixture" in registry.transports
    assert [b.name for b in registry.broken] == ["broken"]
    with pytest.raises(UnknownMode, match="failed to load"):
        registry.transport("broken")


def test_strict_mode_makes_a_broken_plugin_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "requestplane-broken", {"broken": "no_such_module_xyz"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="plugin 'broken' failed to load"):
        RequestPlane("broken", environ={"REQUESTPLANE_STRICT_PLUGINS": "1"})
    with pytest.raises(ConfigError, match="plugin 'broken' failed to load"):
        load_plugins(strict=True)
    # Serving another mode never imports the broken plugin, strict or not.
    assert RequestPlane("fixture", environ={"REQUESTPLANE_STRICT_PLUGINS": "1"}).mode == "fixture"


TYPO = """
    from requestplane_core import hookimpl

    @hookimpl
    def requestplane_transport():
        return []
"""


def test_hookimpl_with_a_typo_is_a_broken_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_module(tmp_path, "typo_plugin", TYPO)
    fake_distribution(tmp_path, "requestplane-typo", {"typo": "typo_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    # Like a plugin that does not import: skipped with a warning, the others still load.
    with pytest.warns(PluginWarning, match=r"'typo' failed to load.*requestplane_transport"):
        registry = load_plugins()
    assert [b.name for b in registry.broken] == ["typo"]
    assert {"tcp", "fixture"} <= set(registry.transports)
    with pytest.raises(ConfigError, match=r"'typo' failed to load.*requestplane_transport"):
        load_plugins(strict=True)


def test_cli_lists_a_broken_plugin_in_one_plain_line_and_the_others(tmp_path: Path) -> None:
    plugin_module(tmp_path, "typo_plugin", TYPO)
    fake_distribution(tmp_path, "requestplane-typo", {"typo": "typo_plugin"})
    fake_distribution(tmp_path, "requestplane-broken", {"broken": "no_such_module_xyz"})
    out = subprocess.run(
        [sys.executable, "-m", "requestplane_core.cli", "transports"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stderr.splitlines()) == [
        "warning: requestplane plugin 'broken' failed to load and is skipped: "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        "warning: requestplane plugin 'typo' failed to load and is skipped: "
        f"PluginValidationError: {out.stderr.split('PluginValidationError: ')[-1].strip()}",
    ]
    assert "requestplane_transport" in out.stderr
    listed = out.stdout.splitlines()
    assert any(line.startswith("typo  BROKEN (requestplane-typo): ") for line in listed)
    assert any(line.startswith("broken  BROKEN (requestplane-broken): ") for line in listed)
    assert any(line.startswith("tcp  (requestplane-tcp") for line in listed)


def test_allow_list_can_name_a_module_that_is_no_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin_module(tmp_path, "local_transport", PROVIDES.format(name="local"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_plugins(allow="local_transport")
    assert registry.transport("local").distribution is None
    assert "fixture" in registry.disabled  # not on the allow-list


def test_deny_list_disables_and_says_so() -> None:
    registry = load_plugins(deny="fixture")
    assert "fixture" in registry.disabled
    with pytest.raises(UnknownMode, match="disabled"):
        RequestPlane("fixture", environ={"REQUESTPLANE_DISABLE_PLUGINS": "fixture"})


def test_unknown_mode_lists_installed_and_how_to_install() -> None:
    with pytest.raises(UnknownMode) as info:
        RequestPlane("carrier-pigeon", environ={})
    message = str(info.value)
    assert "'carrier-pigeon'" in message
    assert "fixture" in message  # installed ones are listed without importing them
    # Only requestplane's extras can be installed as requestplane[name].
    assert "pip install" not in message and "no installed plugin provides it" in message
    with pytest.raises(UnknownMode, match=r'pip install "requestplane\[nats\]"'):
        PluginRegistry().transport("nats")


def test_mode_comes_from_the_environment_and_arguments_win() -> None:
    env = {"REQUESTPLANE_MODE": "carrier-pigeon"}
    with pytest.raises(UnknownMode, match="carrier-pigeon"):
        RequestPlane(environ=env)
    assert RequestPlane("fixture", environ=env).mode == "fixture"


def test_transport_settings_come_from_the_mode_prefix() -> None:
    plane = RequestPlane(
        "fixture",
        environ={"REQUESTPLANE_FIXTURE_PORT": "7000", "REQUESTPLANE_FIXTURE_HOST": "::1"},
        settings={"host": "127.0.0.2"},
    )
    assert (plane.settings.port, plane.settings.host) == (7000, "127.0.0.2")
