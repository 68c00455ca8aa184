"""A plugin installed as its own distribution, so that discovery is tested through a real
entry point. It declares one setting of every supported type; it serves nothing (its
factories refuse), so it is never mistaken for a transport."""

from __future__ import annotations

from pathlib import Path

import attrs

from requestplane_core import TransportSpec, hookimpl, setting, valid_port

IMPORTED = True


@attrs.frozen
class FixtureSettings:
    host: str = setting("127.0.0.1", help="a string")
    port: int = setting(
        0, help="an int with a range", accepts="an integer 0..65535", check=valid_port
    )
    ratio: float = setting(0.5, help="a float")
    verbose: bool = setting(False, help="a bool")
    cert: Path | None = setting(None, help="an optional path")
    timeout: float | None = setting(None, help="an optional float")
    token: str | None = setting(None, help="a secret", secret=True)


def _refuse(settings: FixtureSettings) -> object:
    raise NotImplementedError("the fixture plugin only exists for discovery tests")


@hookimpl
def requestplane_transports() -> list[TransportSpec[FixtureSettings]]:
    return [
        TransportSpec(
            name="fixture",
            description="discovery test fixture (serves nothing)",
            settings=FixtureSettings,
            server=_refuse,  # type: ignore[arg-type]
            client=_refuse,  # type: ignore[arg-type]
        )
    ]
