"""Clients that are not ours (httpx over HTTP/1.1 and over HTTP/2 prior knowledge) see a plain
HTTP API: the echo, and the right status codes for everything that is refused."""

from __future__ import annotations

import json
import shutil

import anyio
import httpx
import pytest
from http_test_helpers import BOUND, served
from requestplane_http import wire

pytestmark = pytest.mark.anyio

PROTOCOLS = {"http1": {"http1": True, "http2": False}, "h2c": {"http1": False, "http2": True}}


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(protocol: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(**PROTOCOLS[protocol], timeout=BOUND)


def _version(protocol: str) -> str:
    return "HTTP/1.1" if protocol == "http1" else "HTTP/2"


async def test_echo(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            response = await http.post(s.url("echo"), content=b"hello")
    assert response.http_version == _version(protocol)
    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["content-type"] == "application/octet-stream"


async def test_meta_headers_and_timeout_reach_the_handler(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            response = await http.post(
                s.url("meta"),
                content=b"",
                headers={"RP-Meta-Trace": "abc", "rp-timeout": "30", "x-other": "not passed"},
            )
            now = anyio.current_time()
    assert response.status_code == 200
    request = s.probe.requests[-1]
    assert dict(request.headers) == {"trace": "abc"}
    assert request.deadline is not None and now < request.deadline <= now + 30


async def test_unknown_endpoint_is_404_with_a_typed_body(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            missing = await http.post(s.url("echo").replace("/echo", "/missing"), content=b"x")
            outside = await http.post(s.url("echo").replace("/v1/rpc/echo", "/other"), content=b"")
            nested = await http.post(s.url("echo") + "/deeper", content=b"")
    for response in (missing, outside, nested):
        assert response.status_code == 404
        assert response.headers["rp-error"] == "not_found"
        assert json.loads(response.content)["code"] == "not_found"


async def test_wrong_method_is_405(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            get = await http.get(s.url("echo"))
            put = await http.put(s.url("echo"), content=b"body")
            again = await http.post(s.url("echo"), content=b"still up")
    for response in (get, put):
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
    assert again.content == b"still up"


async def test_oversize_body_is_413_and_the_connection_survives(protocol: str) -> None:
    limit = 64 * 1024
    async with served({"max_message_size": limit}) as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            declared = await http.post(s.url("echo"), content=b"x" * (limit + 1))

            async def undeclared():  # no content-length: the server counts as it reads
                for _ in range(4):
                    yield b"y" * (limit // 2)

            streamed = await http.post(s.url("echo"), content=undeclared())
            after = await http.post(s.url("echo"), content=b"after")
    for response in (declared, streamed):
        assert response.status_code == 413
        assert json.loads(response.content)["code"] == "too_large"
    assert after.content == b"after"


async def test_handler_error_is_500_with_type_and_message(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            response = await http.post(s.url("fail"), content=b"")
    assert response.status_code == 500
    assert json.loads(response.content) == {
        "code": "remote",
        "message": "bad input",
        "type": "ValueError",
    }


async def test_malformed_timeout_header_is_400(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            response = await http.post(s.url("echo"), content=b"", headers={"rp-timeout": "soon"})
    assert response.status_code == 400
    assert response.headers["rp-error"] == "protocol"


async def test_stream_body_is_framed(protocol: str) -> None:
    async with served() as s, _client(protocol) as http:
        with anyio.fail_after(BOUND):
            ok = await http.post(s.url("chunks"), content=b"a,,bcd")
            broken = await http.post(s.url("fail-midstream"), content=b"")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/x-requestplane-stream"
    frames = wire.StreamDecoder(1 << 20).feed(ok.content)
    assert frames == [(b"D", b"a"), (b"D", b""), (b"D", b"bcd"), (b"E", b"")]
    frames = wire.StreamDecoder(1 << 20).feed(broken.content)
    assert frames[0] == (b"D", b"one")
    assert frames[1][0] == b"X"
    assert json.loads(frames[1][1]) == {"code": "remote", "message": "'lost'", "type": "KeyError"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_sees_status_lines_with_their_reason_phrase() -> None:
    async with served() as s:
        with anyio.fail_after(BOUND * 2):
            lines = []
            for url in (s.url("echo"), s.url("echo").replace("/echo", "/nowhere")):
                done = await anyio.run_process(["curl", "-sS", "-i", "--data", "hi", url])
                lines.append(done.stdout.split(b"\r\n", 1)[0])
    assert lines == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]
