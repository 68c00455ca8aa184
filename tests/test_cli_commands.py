"""Subcommands that other distributions add to ``requestplane`` through the
``requestplane.commands`` entry point group: real entry points, a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

HELLO = '''
    """Say hello: a command plugin for the tests."""

    def add_arguments(parser):
        parser.add_argument("--name", default="world")

    def run(args):
        print(f"hello {args.name}")
        return 3
'''

NO_RUN = '''
    """A command plugin that forgot run()."""

    def add_arguments(parser):
        pass
'''


def command_distribution(root: Path, name: str, commands: dict[str, str]) -> None:
    """Write an installed distribution's metadata (what pip leaves in site-packages)."""
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in commands.items())
    (info / "entry_points.txt").write_text(f"[requestplane.commands]\n{lines}\n")


def requestplane(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requestplane_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_help_lists_the_installed_bench_command(tmp_path: Path) -> None:
    done = requestplane(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "bench" in done.stdout.split("positional arguments:")[0]  # the usage line
    assert "Measure the installed transports" in done.stdout
    assert done.stderr == ""


def test_a_command_plugin_runs_with_its_own_flags_and_exit_status(tmp_path: Path) -> None:
    (tmp_path / "hello_command.py").write_text(textwrap.dedent(HELLO))
    command_distribution(tmp_path, "requestplane-hello", {"hello": "hello_command"})
    done = requestplane(tmp_path, "hello", "--name", "plugins")
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello plugins\n", "")
    listed = requestplane(tmp_path, "--help").stdout
    assert "Say hello: a command plugin for the tests." in listed


def test_a_broken_command_plugin_is_a_warning_and_the_others_still_work(tmp_path: Path) -> None:
    (tmp_path / "hello_command.py").write_text(textwrap.dedent(HELLO))
    (tmp_path / "no_run_command.py").write_text(textwrap.dedent(NO_RUN))
    command_distribution(
        tmp_path,
        "requestplane-mixed",
        {
            "hello": "hello_command",
            "gone": "no_such_module_xyz",
            "norun": "no_run_command",
            "call": "hello_command",  # a built-in command's name is not taken over
        },
    )
    done = requestplane(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "warning: requestplane command 'call' (distribution 'requestplane-mixed') failed to "
        "load and is skipped: ValueError: the command 'call' is already defined",
        "warning: requestplane command 'gone' (distribution 'requestplane-mixed') failed to "
        "load and is skipped: ModuleNotFoundError: No module named 'no_such_module_xyz'",
        "warning: requestplane command 'norun' (distribution 'requestplane-mixed') failed to "
        "load and is skipped: AttributeError: module 'no_run_command' has no attribute 'run'",
    ]
    assert "Say hello" in done.stdout and "norun" not in done.stdout
    hello = requestplane(tmp_path, "hello")
    assert (hello.returncode, hello.stdout, hello.stderr) == (3, "hello world\n", "")
    # Built-in commands load no command plugin: nothing to warn about.
    listing = requestplane(tmp_path, "transports")
    assert listing.returncode == 0 and "warning" not in listing.stderr
    # Naming the broken command itself: the warning, then argparse's usage error.
    gone = requestplane(tmp_path, "gone")
    assert gone.returncode == 2
    assert "failed to load and is skipped" in gone.stderr and "invalid choice" in gone.stderr
