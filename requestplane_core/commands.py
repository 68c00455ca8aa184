"""Subcommands of ``requestplane`` that other distributions add (``requestplane bench``).

A distribution adds a subcommand with an entry point in the ``requestplane.commands`` group;
the entry point's name is the subcommand's name and its value an object (usually a module)
with two functions and a docstring, whose first line is the command's help::

    # pyproject.toml
    [project.entry-points."requestplane.commands"]
    bench = "requestplane_bench"

    # requestplane_bench/__init__.py
    \"\"\"Measure the installed transports: req/s, latency and stream throughput on loopback.\"\"\"

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...   # its flags
    def run(args: argparse.Namespace) -> int: ...                     # the exit status

Command plugins load lazily: ``requestplane call ...`` imports none of them,
``requestplane bench ...`` only the one named ``bench``, and only ``--help`` or a mistyped
command imports them all, to list them. One that fails to load (its import raises, it lacks
``add_arguments`` or ``run``, or its name is a built-in command's) is a :class:`PluginWarning`
naming it and the cause, like a broken transport plugin; the other commands keep working.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points
from typing import Any

from .plugins import PluginWarning

__all__ = ["COMMAND_ENTRY_POINT_GROUP", "add_command_plugins"]

COMMAND_ENTRY_POINT_GROUP = "requestplane.commands"


def _named_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (the top-level
    parser takes no option with a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def add_command_plugins(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    argv: Sequence[str],
    builtin: Collection[str],
) -> None:
    """Add the installed command plugins that ``argv`` may run to ``subparsers``: none when
    it names a built-in command, the one it names, or else (help, a typo) every one."""
    wanted = _named_command(argv)
    if wanted in builtin:
        return
    eps = list(entry_points(group=COMMAND_ENTRY_POINT_GROUP))
    if any(ep.name == wanted for ep in eps):
        eps = [ep for ep in eps if ep.name == wanted]
    added: set[str] = set()
    for ep in sorted(eps, key=lambda ep: ep.name):
        dist = f" (distribution {ep.dist.name!r})" if ep.dist is not None else ""
        try:
            if ep.name in builtin or ep.name in added:
                raise ValueError(f"the command {ep.name!r} is already defined")
            command = ep.load()
            add_arguments: Callable[[argparse.ArgumentParser], None] = command.add_arguments
            run: Callable[[argparse.Namespace], int] = command.run
        except Exception as exc:
            _warn(ep.name, dist, exc)
            continue
        added.add(ep.name)
        parser = subparsers.add_parser(ep.name, help=_help(command))
        try:
            add_arguments(parser)
        except Exception as exc:
            # argparse cannot take a subcommand back: running this one says why it cannot.
            _warn(ep.name, dist, exc)
            run = _broken(ep.name, exc)
        parser.set_defaults(run=run)


def _warn(name: str, dist: str, exc: Exception) -> None:
    warnings.warn(
        f"requestplane command {name!r}{dist} failed to load and is skipped: "
        f"{type(exc).__name__}: {exc}",
        PluginWarning,
        stacklevel=3,
    )


def _broken(name: str, exc: Exception) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        sys.stderr.write(
            f"error: the command {name!r} failed to load: {type(exc).__name__}: {exc}\n"
        )
        return 1

    return run


def _help(command: Any) -> str:
    doc = getattr(command, "__doc__", None)
    return doc.strip().splitlines()[0] if isinstance(doc, str) and doc.strip() else ""
