"""The wire format: encoding and decoding round-trip, and frames survive any split."""

from __future__ import annotations

import math
import struct

import anyio
import pytest
from requestplane_tcp.framing import (
    CANCEL,
    ERROR,
    HEADER,
    HEADER_SIZE,
    MAX_ERROR_MESSAGE,
    METADATA_LIMIT,
    PREAMBLE,
    REQUEST,
    RESPONSE,
    VERSION,
    FrameError,
    check_preamble,
    decode_error,
    decode_request,
    encode_error,
)
from tcp_test_helpers import (
    BOUND,
    RawReader,
    raw_connect,
    request_frame,
    running,
)

from requestplane_core import (
    DeadlineExceeded,
    PayloadTooLarge,
    RemoteError,
    Request,
    error_from_wire,
)


def _body(frame: bytes) -> memoryview:
    length, _kind, _rid = HEADER.unpack_from(frame)
    assert len(frame) == HEADER_SIZE + length
    return memoryview(frame)[HEADER_SIZE:]


def test_preamble_is_magic_and_version() -> None:
    assert len(PREAMBLE) == 8
    assert PREAMBLE[4] == VERSION
    check_preamble(PREAMBLE)
    with pytest.raises(FrameError, match="wrong magic"):
        check_preamble(b"GET / HT")
    with pytest.raises(FrameError, match="version 7"):
        check_preamble(PREAMBLE[:4] + bytes((7, 0, 0, 0)))


@pytest.mark.parametrize(
    ("endpoint", "headers", "remaining", "payload"),
    [
        ("echo", None, None, b"hello"),
        ("échø-ünicode", {"k": "v", "ключ": "значение", "empty": ""}, 1.5, b""),
        ("e", {"big": "x" * 60000}, 0.0, bytes(range(256)) * 40),
        ("late", None, -3.25, b"\x00" * 10),
    ],
)
def test_request_round_trip(
    endpoint: str, headers: dict[str, str] | None, remaining: float | None, payload: bytes
) -> None:
    frame = request_frame(77, endpoint, payload, headers, remaining)
    _length, kind, rid = HEADER.unpack_from(frame)
    assert (kind, rid) == (REQUEST, 77)
    got_endpoint, got_headers, got_remaining, got_payload = decode_request(_body(frame))
    assert got_endpoint == endpoint
    assert got_headers == (headers or {})
    assert got_remaining == remaining
    assert got_payload == payload
    # what the server builds from it is a valid Request
    Request(got_endpoint, got_payload, got_headers, None)


def test_metadata_over_the_limit_is_refused_before_sending() -> None:
    with pytest.raises(PayloadTooLarge, match="headers"):
        request_frame(1, "e", b"", {"h": "x" * (METADATA_LIMIT + 1)})


@pytest.mark.parametrize(
    "body",
    [
        b"",  # shorter than the fixed fields
        b"\x7f\xf0\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00",  # endpoint longer than the frame
        b"\x7f\xf0\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\xff\xfe",  # endpoint not UTF-8
        b"\x7f\xf8\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00e",  # deadline NaN
        b"\x7f\xf0\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01e\x00\x05",  # header cut short
        b"\x7f\xf0\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01e\x00\x01\x00\x00\x00\x09kv",
    ],
)
def test_malformed_request_bodies_are_frame_errors(body: bytes) -> None:
    with pytest.raises(FrameError):
        decode_request(memoryview(body))


@pytest.mark.parametrize(
    "error",
    [
        DeadlineExceeded("too slow"),
        PayloadTooLarge("big"),
        RemoteError("ValueError", "bad input: ünïcode"),
        RemoteError("KeyError", ""),
    ],
)
def test_error_round_trip(error: Exception) -> None:
    assert isinstance(error, (DeadlineExceeded, PayloadTooLarge, RemoteError))
    frame = encode_error(5, error)
    _length, kind, rid = HEADER.unpack_from(frame)
    assert (kind, rid) == (ERROR, 5)
    rebuilt = error_from_wire(*decode_error(_body(frame)))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)
    if isinstance(error, RemoteError):
        assert isinstance(rebuilt, RemoteError)
        assert rebuilt.type_name == error.type_name
        assert rebuilt.remote_message == error.remote_message


def test_long_error_messages_are_cut_not_refused() -> None:
    frame = encode_error(1, RemoteError("E", "é" * MAX_ERROR_MESSAGE))
    assert len(frame) - HEADER_SIZE <= METADATA_LIMIT
    code, message, remote_type = decode_error(_body(frame))
    assert (code, remote_type) == ("remote", "E")
    assert message.startswith("é" * 100)


def test_error_fields_past_the_frame_are_frame_errors() -> None:
    with pytest.raises(FrameError):
        decode_error(memoryview(b"\x09\x00\x00abc"))


def test_no_deadline_is_infinity_on_the_wire() -> None:
    frame = request_frame(1, "e", b"")
    assert decode_request(_body(frame))[2] is None
    assert math.isinf(struct.unpack_from(">d", frame, HEADER_SIZE)[0])


@pytest.mark.anyio
@pytest.mark.parametrize("step", [1, 3, 7, 4096])
async def test_frames_survive_any_split_on_a_live_server(step: int) -> None:
    """The server's reader reassembles frames cut at every possible byte boundary."""

    async def upper(request: Request) -> bytes:
        return request.payload.upper() + request.headers.get("n", "").encode()

    async with running({"upper": upper}) as (_server, addresses):
        stream = await raw_connect(addresses["upper"], preamble=None)
        wire = PREAMBLE + b"".join(
            request_frame(i, "upper", b"abc%d" % i, {"n": str(i)}) for i in range(1, 21)
        )
        reader = RawReader(stream)
        with anyio.fail_after(BOUND):
            for start in range(0, len(wire), step):
                await stream.send(wire[start : start + step])
            assert await reader.preamble() == PREAMBLE
            answers = {}
            for _ in range(20):
                kind, rid, body = await reader.frame()
                assert kind == RESPONSE
                answers[rid] = body
        assert answers == {i: b"ABC%d%d" % (i, i) for i in range(1, 21)}
        # A CANCEL for an id that is not running is ignored; the connection stays usable.
        with anyio.fail_after(BOUND):
            await stream.send(HEADER.pack(0, CANCEL, 999) + request_frame(1, "upper", b"z"))
            assert await reader.frame() == (RESPONSE, 1, b"Z")
        await stream.aclose()
