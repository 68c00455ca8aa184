"""The ``requestplane`` command in NATS mode, as a newcomer meets it: no nats-server running,
and Ctrl-C on a worker with an embedded nats-server. Real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import sys

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from requestplane_nats import NatsServerProcess

from requestplane_core import Address

pytestmark = pytest.mark.anyio

BOUND = 30.0  # only turns a hang into a failure on a loaded machine
CLI = [sys.executable, "-m", "requestplane_core.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REQUESTPLANE_")}
    return {**env, **extra}


@pytest.mark.parametrize("command", ["serve", "call"])
async def test_no_nats_server_is_one_line_saying_what_to_do(
    command: str, anyio_backend: str
) -> None:
    with NatsServerProcess() as gone:
        url = gone.url  # nothing listens there any more
    if command == "serve":
        args = ["serve", "--mode", "nats", "--backend", anyio_backend]
    else:
        args = ["call", f"nats://{url[7:]}/requestplane.echo", "--backend", anyio_backend]
    with anyio.fail_after(BOUND):
        done = await anyio.run_process(
            [*CLI, *args], env=_env(REQUESTPLANE_NATS_URL=url), check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 1
    assert err.count("\n") == 1 and err.startswith("error: Unavailable: cannot connect"), err
    for way_forward in ("nats-server", "REQUESTPLANE_NATS_URL", "REQUESTPLANE_NATS_EMBEDDED=1"):
        assert way_forward in err


async def test_ctrl_c_on_a_worker_with_an_embedded_nats_server_is_a_clean_exit(
    anyio_backend: str,
) -> None:
    args = [*CLI, "serve", "--mode", "nats", "--json", "--backend", anyio_backend]
    # Its own session, so that signalling its process group is what Ctrl-C in a terminal does
    # (the group holds the embedded nats-server too, unless that is kept out of it).
    process = await anyio.open_process(
        args, env=_env(REQUESTPLANE_NATS_EMBEDDED="1"), start_new_session=True
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        stdout = BufferedByteReceiveStream(process.stdout)
        with anyio.fail_after(BOUND):
            lines = [(await stdout.receive_until(b"\n", 1 << 16)).decode() for _ in range(2)]
            os.killpg(process.pid, signal.SIGINT)
            await process.wait()
            err = b"".join([chunk async for chunk in process.stderr]).decode()
        assert process.returncode == 0
        assert err == ""
        address = Address.parse(json.loads(lines[0])["address"])
        with pytest.raises(OSError):  # the embedded nats-server went with it
            await anyio.connect_tcp(address.host, address.port or 0)
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
