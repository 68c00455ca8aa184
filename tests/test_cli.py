"""The command line end to end: serve the demo endpoints, call them, fail clearly."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BOUND = 30.0
CLI = [sys.executable, "-m", "requestplane_core.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        timeout=BOUND,
        env={**os.environ, **(env or {})},
    )


def read_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError("the server printed nothing in time")
    return proc.stdout.readline()


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["tcp", "http"])
def served(request: pytest.FixtureRequest, backend: str) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--json", "--mode", request.param, "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() must see every line that readline() has not
    )
    try:
        deadline = time.monotonic() + BOUND
        addresses = {}
        while len(addresses) < 2:
            line = read_line(proc, deadline)
            assert line, proc.stderr.read() if proc.stderr else b""
            record = json.loads(line)
            addresses[record["endpoint"]] = record["address"]
        yield addresses
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_then_call_both_endpoints(served: dict[str, str], backend: str) -> None:
    echo = run("call", served["echo"], "--data", "hello", "--backend", backend)
    assert (echo.returncode, echo.stdout, echo.stderr) == (0, b"hello", b"")

    stream = run("call", served["stream"], "--data", "5", "--stream", "--backend", backend)
    assert (stream.returncode, stream.stdout) == (0, b"0\n1\n2\n3\n4\n")

    joined = run("call", served["stream"], "--data", "3", "--backend", backend)
    assert joined.stdout == b"0\n1\n2\n"


def test_call_reads_stdin_and_headers(served: dict[str, str]) -> None:
    out = run("call", served["echo"], "-H", "x-trace=1", stdin=b"from stdin")
    assert (out.returncode, out.stdout) == (0, b"from stdin")


def test_call_unknown_endpoint_fails_with_one_typed_line(served: dict[str, str]) -> None:
    missing = served["echo"].rsplit("/", 1)[0] + "/missing"
    out = run("call", missing, "--data", "x")
    assert out.returncode == 1
    assert out.stdout == b""
    [line] = out.stderr.decode().splitlines()
    assert line.startswith("error: EndpointNotFound: ")


def test_handler_error_is_reported_as_remote_error(served: dict[str, str]) -> None:
    out = run("call", served["stream"], "--data", "not-a-number", "--stream")
    assert out.returncode == 1
    assert out.stderr.decode().startswith("error: RemoteError: ValueError: ")


@pytest.mark.parametrize("scheme", ["tcp", "http"])
def test_call_to_nothing_listening_is_unavailable(scheme: str) -> None:
    # A port that was just free: nothing listens there.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run("call", f"{scheme}://127.0.0.1:{port}/echo", "--data", "x", "--timeout", "5")
    assert out.returncode == 1
    # Nothing was sent, so the error is the retriable one (another instance may serve it).
    assert out.stderr.decode().startswith("error: Unavailable: ")


def test_malformed_env_value_names_the_variable() -> None:
    out = run("serve", env={"REQUESTPLANE_TCP_PORT": "eighty"})
    assert out.returncode == 1
    message = out.stderr.decode()
    assert message.startswith("error: ConfigError: REQUESTPLANE_TCP_PORT='eighty'")


def test_unknown_mode_lists_installed_and_the_install_command() -> None:
    out = run("serve", env={"REQUESTPLANE_MODE": "pigeon"})
    assert out.returncode == 1
    message = out.stderr.decode()
    assert message.startswith("error: UnknownMode: ")
    # Only tcp, http and nats are extras of requestplane: no install command for others.
    assert "installed: " in message and "tcp" in message and "pip install" not in message
    assert "no installed plugin provides it" in message


@pytest.mark.parametrize(
    "args",
    [
        ["call"],
        ["call", "tcp://h:1/e", "--data", "a", "--data-file", "b"],
        ["call", "tcp://h:1/e", "--timeout", "-1"],
        ["serve", "--backend", "curio"],
        ["frobnicate"],
        ["call", "tcp://h:1/e", "-H", "novalue", "--data", "x"],
        ["call", "tcp://h:1/e", "--data-file", "/nonexistent/payload"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert b"usage: requestplane" in out.stderr


def test_usage_errors_say_what_is_wrong() -> None:
    out = run("call", "tcp://h:1/e", "-H", "novalue", "--data", "x")
    assert b"-H/--header: 'novalue': expected KEY=VALUE" in out.stderr
    out = run("call", "tcp://h:1/e", "--data-file", "/nonexistent/payload")
    assert b"--data-file: cannot read /nonexistent/payload: No such file" in out.stderr


def test_bad_address_and_bad_header_fail_clearly() -> None:
    for bad in ("not an address", "localhost:8080/echo", "tcp:host/echo"):
        out = run("call", bad, "--data", "x")
        assert (out.returncode, out.stderr.decode().split(":")[1].strip()) == (1, "ConfigError")
        assert "not a valid endpoint name" in out.stderr.decode()


def test_transports_lists_each_with_its_settings() -> None:
    out = run("transports", "--json")
    assert out.returncode == 0
    lines = list(map(json.loads, out.stdout.decode().splitlines()))
    records = {r["name"]: r for r in lines if r.get("kind") == "transport"}
    assert {"tcp", "http", "nats"} <= set(records)
    discovery = {r["name"]: r for r in lines if r.get("kind") == "discovery"}
    assert {"file", "static"} <= set(discovery)
    file_envs = {s["env"]: s["default"] for s in discovery["file"]["settings"]}
    assert file_envs["REQUESTPLANE_DISCOVERY_FILE_TTL"] == 10.0
    tcp = records["tcp"]
    assert tcp["distribution"] == "requestplane-tcp"
    envs = {s["env"]: s["default"] for s in tcp["settings"]}
    assert envs["REQUESTPLANE_TCP_PORT"] == 0
    assert envs["REQUESTPLANE_TCP_HOST"] == "127.0.0.1"
    human = run("transports")
    assert human.returncode == 0 and b"REQUESTPLANE_TCP_PORT" in human.stdout


def test_transports_aligns_each_listing_s_help_column() -> None:
    records = [json.loads(line) for line in run("transports", "--json").stdout.splitlines()]
    human = run("transports").stdout.decode().splitlines()
    checked = 0
    for record in records:
        starts = set()
        for s in record.get("settings", []):
            line = next(x for x in human if x.startswith(f"    {s['env']}="))
            if s["help"]:
                starts.add(line.rindex(s["help"]))  # where the help column starts
        assert len(starts) <= 1, f"{record['name']}: help starts at columns {sorted(starts)}"
        checked += bool(starts)
    assert checked >= 3


@pytest.mark.parametrize("mode", ["tcp", "http"])
def test_serve_publishes_and_call_by_name_reaches_a_live_instance(
    mode: str, backend: str, tmp_path: Path
) -> None:
    env = {"REQUESTPLANE_DISCOVERY_FILE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [*CLI, "serve", "--json", "--mode", mode, "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + BOUND
        records = {}
        while len(records) < 3:
            line = read_line(proc, deadline)
            assert line, proc.stderr.read() if proc.stderr else b""
            record = json.loads(line)
            records[record["name"]] = record
        instance = records["echo"]["instance"]
        assert {r["instance"] for r in records.values()} == {instance}
        assert set(records) == {"echo", "stream", "whoami"}
        call = ("call", "--backend", backend)
        assert run(*call, "whoami", env=env).stdout.decode() == instance
        assert run(*call, "echo", "--data", "hi", "--route", "p2c", env=env).stdout == b"hi"
        out = run(*call, "stream", "--stream", "--data", "2", env=env)
        assert out.stdout == b"0\n1\n"
        listed = run("instances", "echo", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        (record,) = map(json.loads, listed.stdout.decode().splitlines())
        assert record["instance"] == instance and record["transport"] == mode
        names = run("instances", "--json", env=env).stdout.decode().splitlines()
        assert {json.loads(n)["name"] for n in names} == {"echo", "stream", "whoami"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=BOUND) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Withdrawn when it stopped: nothing left to call, said promptly and typed.
    missing = run("call", "echo", "--data", "x", env=env)
    assert missing.returncode == 1
    assert "NoInstances" in missing.stderr.decode() and "0 known" in missing.stderr.decode()
