"""The incremental frame parser shared by both ways of reading (a receive loop and a
protocol): frames in order however the bytes are cut, oversized bodies skipped unbuffered,
large frames gathered into one ``bytes``, and a peer closing mid-frame reported."""

from __future__ import annotations

import pytest
from requestplane_tcp.frame_parser import GATHER_FROM, FrameParser, body_bytes
from requestplane_tcp.framing import CANCEL, REQUEST, RESPONSE, FrameError, frame_limits
from tcp_test_helpers import frame

LIMITS = frame_limits({REQUEST: 1 << 20, CANCEL: 0})


class Recorder:
    def __init__(self, keep_views: bool = False) -> None:
        self.frames: list[tuple[int, int, bytes]] = []
        self.oversize: list[tuple[int, int, int]] = []
        self.views: list[memoryview] = []
        self.keep_views = keep_views

    def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
        self.frames.append((kind, rid, bytes(body)))
        if self.keep_views:
            self.views.append(body)  # as a handler that holds on to its view a little

    def on_oversize(self, kind: int, rid: int, length: int) -> None:
        if kind != REQUEST:
            raise FrameError(f"kind {kind} is never received here")
        self.oversize.append((kind, rid, length))


def stream_of_frames() -> tuple[bytes, list[tuple[int, int, bytes]]]:
    frames = [(REQUEST, rid, bytes([rid]) * size) for rid, size in enumerate([0, 1, 9, 700, 5], 1)]
    frames.append((CANCEL, 9, b""))
    return b"".join(frame(*f) for f in frames), frames


@pytest.mark.parametrize("cut", [1, 2, 8, 9, 10, 100, 100_000])
def test_frames_come_out_in_order_however_the_bytes_are_cut(cut: int) -> None:
    data, expected = stream_of_frames()
    recorder = Recorder(keep_views=True)  # held views: the buffer must never be resized
    parser = FrameParser(recorder, LIMITS, bytearray())
    for pos in range(0, len(data), cut):
        parser.feed(data[pos : pos + cut])
    parser.at_eof()
    assert recorder.frames == expected


def test_what_arrived_before_the_parser_is_parsed_first() -> None:
    data, expected = stream_of_frames()
    recorder = Recorder()
    parser = FrameParser(recorder, LIMITS, bytearray(data[:20]))
    parser.feed(b"")
    parser.feed(data[20:])
    assert recorder.frames == expected


def test_an_oversized_body_is_skipped_as_it_arrives_and_the_next_frame_parsed() -> None:
    big = frame(REQUEST, 3, b"z" * ((1 << 20) + 1))
    after = frame(REQUEST, 4, b"next")
    recorder = Recorder()
    parser = FrameParser(recorder, LIMITS, bytearray())
    data = big + after
    for pos in range(0, len(data), 65536):
        parser.feed(data[pos : pos + 65536])
        assert len(parser._buf) < 65536 + 9  # the skipped body is never buffered
    parser.at_eof()
    assert recorder.oversize == [(REQUEST, 3, (1 << 20) + 1)]
    assert recorder.frames == [(REQUEST, 4, b"next")]


def test_an_oversized_frame_of_a_kind_never_received_raises() -> None:
    parser = FrameParser(Recorder(), LIMITS, bytearray())
    with pytest.raises(FrameError):
        parser.feed(frame(RESPONSE, 1, b"x"))


@pytest.mark.parametrize("cut", [9, 4096, GATHER_FROM, 3 * GATHER_FROM])
def test_a_large_frame_is_gathered_into_one_bytes(cut: int) -> None:
    payload = bytes(range(256)) * (3 * GATHER_FROM // 256 + 7)
    data = frame(REQUEST, 1, b"a") + frame(REQUEST, 2, payload) + frame(REQUEST, 3, b"b")
    bodies: list[memoryview] = []

    class Keep(Recorder):
        def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
            super().on_frame(kind, rid, body)
            bodies.append(body)

    recorder = Keep()
    parser = FrameParser(recorder, LIMITS, bytearray())
    for pos in range(0, len(data), cut):
        parser.feed(data[pos : pos + cut])
    parser.at_eof()
    assert recorder.frames == [(REQUEST, 1, b"a"), (REQUEST, 2, payload), (REQUEST, 3, b"b")]
    if cut < len(data):  # it did not arrive whole: gathered, and taken without a copy
        assert body_bytes(bodies[1]) is bodies[1].obj


@pytest.mark.parametrize(
    "data",
    [
        frame(REQUEST, 1, b"whole") + frame(REQUEST, 2, b"half")[:-2],  # in a small frame
        frame(REQUEST, 1, b"x")[:5],  # in a header
        frame(REQUEST, 1, b"y" * ((1 << 20) + 1))[:70000],  # in a body being skipped
        frame(REQUEST, 1, b"y" * (2 * GATHER_FROM))[:70000],  # in a frame being gathered
    ],
)
def test_eof_in_the_middle_of_a_frame_is_a_frame_error(data: bytes) -> None:
    parser = FrameParser(Recorder(), LIMITS, bytearray())
    parser.feed(data)
    with pytest.raises(FrameError, match="middle of a frame"):
        parser.at_eof()


def test_eof_between_frames_is_clean() -> None:
    parser = FrameParser(Recorder(), LIMITS, bytearray())
    parser.feed(frame(REQUEST, 1, b"x") * 3)
    parser.at_eof()


@pytest.mark.parametrize("cut", [1, 7, 9, 1000, 65536, 300_000])
def test_partial_counts_the_bytes_of_the_incomplete_frame(cut: int) -> None:
    """What the server's stalled-frame check reads: 0 between frames, else how much of the
    frame in progress arrived, whether it is buffered, skipped (oversized) or gathered."""
    frames = [
        frame(REQUEST, 1, b"a" * 700),
        frame(REQUEST, 2, b"o" * ((1 << 20) + 1)),  # over the limit: skipped
        frame(REQUEST, 3, b"g" * (GATHER_FROM + 5)),  # gathered when cut small enough
        frame(CANCEL, 4),
    ]
    boundaries = [0]
    for f in frames:
        boundaries.append(boundaries[-1] + len(f))
    data = b"".join(frames)
    recorder = Recorder()
    parser = FrameParser(recorder, LIMITS, bytearray())
    for pos in range(0, len(data), cut):
        parser.feed(data[pos : pos + cut])
        fed = min(pos + cut, len(data))
        assert parser.partial() == fed - max(b for b in boundaries if b <= fed), fed
    assert parser.partial() == 0
    assert [rid for _kind, rid, _body in recorder.frames] == [1, 3, 4]
