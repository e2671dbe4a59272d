"""The short path's frame cutter: whole frames out of any chunking, the text of a
final text frame, every other frame raw, and a hand-over wherever websockets would
refuse what comes; the text frames written directly; the parser-idle check."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.uri import parse_uri

from realtime import ws_frames
from realtime.ws_frames import (
    HAND_OVER,
    FrameReader,
    HandOver,
    is_data_frame,
    parser_at_frame_boundary,
    read_frames,
    text_frame,
)

Result = str | bytes | HandOver

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def frame(
    opcode: Opcode,
    data: bytes,
    *,
    masked: bool,
    fin: bool = True,
    rsv: int = 0,
) -> bytes:
    """A frame as websockets serializes it; `rsv` ORed into the first byte."""
    raw = bytearray(Frame(opcode, data, fin=fin).serialize(mask=masked))
    raw[0] |= rsv
    return bytes(raw)


def text(data: str, *, masked: bool) -> bytes:
    return frame(Opcode.TEXT, data.encode(), masked=masked)


def drain(reader: FrameReader) -> list[Result]:
    """Everything `read` gives until it has nothing whole, or hands over."""
    results: list[Result] = []
    while (result := reader.read()) is not None:
        results.append(result)
        if result is HAND_OVER:
            break
    return results


def read_in_chunks(
    stream: bytes, cuts: Sequence[int], *, masked: bool, max_size: int | None = None
) -> list[Result]:
    """Feed `stream` cut at the positions `cuts`, reading after each chunk."""
    reader = FrameReader(masked=masked, max_size=max_size)
    results: list[Result] = []
    start = 0
    for end in [*sorted(cuts), len(stream)]:
        reader.feed(stream[start:end])
        start = end
        results += drain(reader)
        if results and results[-1] is HAND_OVER:
            break
    return results


def websockets_parse(raw: bytes, *, masked: bool) -> tuple[Frame, bytes]:
    """websockets' own parse of one frame: the frame and the bytes left over."""
    reader = StreamReader()
    reader.feed_data(raw)
    parser = Frame.parse(reader.read_exact, mask=masked)
    with pytest.raises(StopIteration) as stop:
        next(parser)
    return stop.value.value, bytes(reader.buffer)


# --------------------------------------------------------------- text frames read


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("masked", [True, False])
def test_a_text_frame_reads_back_as_its_text(length: int, masked: bool) -> None:
    payload = "日" * (length // 3) + "x" * (length % 3)  # multi-byte, `length` bytes
    assert len(payload.encode()) == length
    raw = text(payload, masked=masked)
    reader = FrameReader(masked=masked, max_size=None)
    reader.feed(raw)
    assert reader.read() == payload
    assert reader.read() is None
    assert reader.rest() == b""


@pytest.mark.parametrize("length", [125, 126, 65535, 65536])
def test_the_header_forms_are_the_ones_expected(length: int) -> None:
    # 7-bit, 16-bit and 64-bit lengths: the frames above really used each form.
    raw = text("a" * length, masked=True)
    marker = raw[1] & 0x7F
    assert marker == (length if length < 126 else 126 if length < 65536 else 127)


def test_a_text_frame_fed_byte_by_byte_comes_out_once_at_its_last_byte() -> None:
    raw = text("hello", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    for byte in raw[:-1]:
        reader.feed(bytes([byte]))
        assert reader.read() is None
    reader.feed(raw[-1:])
    assert reader.read() == "hello"
    assert reader.read() is None


def test_max_size_itself_is_accepted() -> None:
    reader = FrameReader(masked=False, max_size=300)
    reader.feed(text("a" * 300, masked=False))
    assert reader.read() == "a" * 300


# ------------------------------------------------------------ any chunking, same


def mixed_stream(masked: bool) -> tuple[bytes, list[Result]]:
    """Frames of every kind, and what `read` must give for each."""
    parts: list[tuple[bytes, Result | None]] = [
        (text("first", masked=masked), "first"),
        (text("", masked=masked), ""),
        (text("日本語 " * 20, masked=masked), "日本語 " * 20),
        (text("b" * 126, masked=masked), "b" * 126),
        (frame(Opcode.PING, b"ping!", masked=masked), None),
        (frame(Opcode.BINARY, b"\x00\xff\x01", masked=masked), None),
        (text("c" * 300, masked=masked), "c" * 300),
        (frame(Opcode.TEXT, b"frag-", masked=masked, fin=False), None),
        (frame(Opcode.CONT, b"\xff\xfe", masked=masked, fin=False), None),
        (frame(Opcode.CONT, b"ment", masked=masked), None),
        (frame(Opcode.PONG, b"", masked=masked), None),
        (frame(Opcode.TEXT, b"compressed?", masked=masked, rsv=0x40), None),
        (frame(Opcode.TEXT, b"rsv2", masked=masked, rsv=0x20), None),
        (frame(Opcode.TEXT, b"rsv3", masked=masked, rsv=0x10), None),
        (frame(Opcode.CLOSE, struct.pack("!H", 1000) + b"bye", masked=masked), None),
        (text("last", masked=masked), "last"),
    ]
    expected: list[Result] = [raw if out is None else out for raw, out in parts]
    return b"".join(raw for raw, _ in parts), expected


@pytest.mark.parametrize("masked", [True, False])
def test_a_stream_fed_whole_gives_texts_and_the_exact_raw_other_frames(
    masked: bool,
) -> None:
    stream, expected = mixed_stream(masked)
    assert read_in_chunks(stream, [], masked=masked) == expected
    # The raw ones are the bytes received, as `bytes`, not a view or bytearray.
    for result in read_in_chunks(stream, [], masked=masked):
        assert type(result) in (str, bytes)


@pytest.mark.parametrize("masked", [True, False])
def test_every_split_point_gives_the_same_results(masked: bool) -> None:
    stream, expected = mixed_stream(masked)
    for cut in range(len(stream) + 1):
        assert read_in_chunks(stream, [cut], masked=masked) == expected, cut


@pytest.mark.parametrize("masked", [True, False])
def test_byte_by_byte_gives_the_same_results(masked: bool) -> None:
    stream, expected = mixed_stream(masked)
    assert read_in_chunks(stream, range(len(stream)), masked=masked) == expected


@pytest.mark.parametrize("masked", [True, False])
def test_long_frames_collected_across_chunks(masked: bool) -> None:
    # Frames far longer than a chunk go through the collecting buffer.
    payloads = ["x" * 70000, "short", "y" * 65535, "z" * 5000, "end"]
    stream = b"".join(text(p, masked=masked) for p in payloads)
    for size in (1, 7, 1000, 4096, 4097, 65536, 100000):
        cuts = range(size, len(stream), size)
        assert read_in_chunks(stream, cuts, masked=masked) == payloads, size


@st.composite
def frames_and_results(draw: st.DrawFn, masked: bool) -> tuple[bytes, list[Result]]:
    parts: list[tuple[bytes, Result]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["text", "text", "binary", "control", "odd"]))
        if kind == "text":
            content = draw(st.text(max_size=draw(st.sampled_from([5, 130, 300]))))
            parts.append((text(content, masked=masked), content))
        elif kind == "binary":
            raw = frame(Opcode.BINARY, draw(st.binary(max_size=200)), masked=masked)
            parts.append((raw, raw))
        elif kind == "control":
            opcode = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
            raw = frame(opcode, draw(st.binary(max_size=125)), masked=masked)
            parts.append((raw, raw))
        else:  # text or continuation, unfinished or with a reserved bit
            opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.CONT]))
            fin = draw(st.booleans())
            rsv = 0 if not fin else draw(st.sampled_from([0x40, 0x20, 0x10]))
            data = draw(st.binary(max_size=200))
            raw = frame(opcode, data, masked=masked, fin=fin, rsv=rsv)
            parts.append((raw, raw))
    return b"".join(raw for raw, _ in parts), [out for _, out in parts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), masked=st.booleans())
def test_random_frames_random_chunkings(data: st.DataObject, masked: bool) -> None:
    stream, expected = data.draw(frames_and_results(masked))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert read_in_chunks(stream, [], masked=masked) == expected
    assert read_in_chunks(stream, cuts, masked=masked) == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), masked=st.booleans())
def test_texts_agree_with_websockets_parser(data: st.DataObject, masked: bool) -> None:
    # Whatever websockets parses as a final text frame, the reader gives as str.
    stream, _ = data.draw(frames_and_results(masked))
    results = read_in_chunks(stream, [], masked=masked)
    rest = stream
    for result in results:
        if isinstance(result, str):
            parsed, left = websockets_parse(rest, masked=masked)
            assert parsed.opcode is Opcode.TEXT and parsed.fin
            assert parsed.data.decode() == result
            rest = left
        else:
            assert isinstance(result, bytes)
            assert rest.startswith(result)
            rest = rest[len(result) :]
    assert rest == b""


# ------------------------------------------------------------------- hand-overs


def test_server_side_hands_over_an_unmasked_frame() -> None:
    good = text("ok", masked=True)
    bad = text("unmasked", masked=False)
    after = text("after", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(good + bad + after)
    assert reader.read() == "ok"
    assert reader.read() is HAND_OVER
    assert reader.rest() == bad + after
    assert reader.rest() == b""
    assert reader.read() is None


def test_client_side_hands_over_a_masked_frame() -> None:
    good = text("ok", masked=False)
    bad = text("masked", masked=True)
    reader = FrameReader(masked=False, max_size=None)
    reader.feed(good + bad)
    assert reader.read() == "ok"
    assert reader.read() is HAND_OVER
    assert reader.rest() == bad


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.BINARY, Opcode.CLOSE])
def test_the_mask_bit_is_checked_on_every_frame_kind(opcode: Opcode) -> None:
    raw = frame(opcode, b"", masked=False)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(raw)
    assert reader.read() is HAND_OVER
    assert reader.rest() == raw


def test_wrong_mask_bit_decided_from_the_first_two_bytes() -> None:
    raw = text("unmasked but long", masked=False)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(raw[:2])
    assert reader.read() is HAND_OVER
    assert reader.rest() == raw[:2]


@pytest.mark.parametrize(
    ("length", "header_size"), [(11, 2), (1001, 4), (70000, 10)], ids=str
)
@pytest.mark.parametrize("masked", [True, False])
def test_too_long_decided_from_the_header_alone(
    length: int, header_size: int, masked: bool
) -> None:
    max_size = {11: 10, 1001: 1000, 70000: 69999}[length]
    raw = text("a" * length, masked=masked)
    reader = FrameReader(masked=masked, max_size=max_size)
    reader.feed(raw[: header_size - 1])
    assert reader.read() is None  # the length is not known yet
    reader.feed(raw[header_size - 1 : header_size])  # only the header so far
    assert reader.read() is HAND_OVER
    assert reader.rest() == raw[:header_size]


def test_too_long_after_a_good_frame_hands_over_from_the_long_one() -> None:
    good = text("fine", masked=True)
    too_long = frame(Opcode.BINARY, b"b" * 200, masked=True)
    reader = FrameReader(masked=True, max_size=100)
    reader.feed(good + too_long[:5])
    assert reader.read() == "fine"
    assert reader.read() is HAND_OVER
    assert reader.rest() == too_long[:5]


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xfe", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf", "日本".encode()[:-1]],
    ids=["ff-fe", "truncated", "surrogate", "overlong", "cut-kanji"],
)
@pytest.mark.parametrize("masked", [True, False])
def test_invalid_utf8_hands_over_from_that_frame(bad: bytes, masked: bool) -> None:
    before = text("before", masked=masked)
    invalid = frame(Opcode.TEXT, bad, masked=masked)
    after = text("after", masked=masked)
    reader = FrameReader(masked=masked, max_size=None)
    reader.feed(before + invalid + after[:3])
    assert reader.read() == "before"
    assert reader.read() is HAND_OVER
    assert reader.read() is HAND_OVER  # stays put until rest() is taken
    assert reader.rest() == invalid + after[:3]


def test_invalid_utf8_in_a_long_collected_frame_hands_over_all_of_it() -> None:
    invalid = frame(Opcode.TEXT, b"a" * 9000 + b"\xff", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    for start in range(0, len(invalid), 1000):
        reader.feed(invalid[start : start + 1000])
        result = reader.read()
    assert result is HAND_OVER
    assert reader.rest() == invalid


@pytest.mark.parametrize("masked", [True, False])
def test_rest_while_a_long_frame_is_being_collected(masked: bool) -> None:
    first = text("done", masked=masked)
    long = text("L" * 20000, masked=masked)
    reader = FrameReader(masked=masked, max_size=None)
    reader.feed(first + long[:100])
    assert reader.read() == "done"
    assert reader.read() is None  # 19900+ bytes missing: collecting
    reader.feed(long[100:5000])
    assert reader.read() is None
    reader.feed(long[5000:9000])
    assert reader.read() is None
    assert reader.rest() == long[:9000]
    # Emptied: what comes next starts a new frame.
    assert reader.rest() == b""
    reader.feed(text("new", masked=masked))
    assert reader.read() == "new"


def test_rest_of_a_partial_header_and_of_a_read_stream() -> None:
    reader = FrameReader(masked=False, max_size=None)
    raw = text("x" * 70000, masked=False)
    reader.feed(raw[:5])
    assert reader.read() is None
    assert reader.rest() == raw[:5]
    reader.feed(text("a", masked=False) + text("b", masked=False))
    assert reader.read() == "a"
    assert reader.rest() == text("b", masked=False)


# ---------------------------------------------------------------- frames written


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("masked", [True, False])
def test_text_frame_parses_with_websockets(length: int, masked: bool) -> None:
    payload = bytes(range(97, 123)) * (length // 26) + b"q" * (length % 26)
    raw = text_frame(payload, masked=masked)
    parsed, left = websockets_parse(raw, masked=masked)
    assert left == b""
    assert parsed.opcode is Opcode.TEXT
    assert parsed.fin and not (parsed.rsv1 or parsed.rsv2 or parsed.rsv3)
    assert parsed.data == payload
    # Same header as websockets writes, and our reader takes it back.
    assert raw[:2] == Frame(Opcode.TEXT, payload).serialize(mask=masked)[:2]
    reader = FrameReader(masked=masked, max_size=None)
    reader.feed(raw)
    assert reader.read() == payload.decode()


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_text_frame_header_sizes(length: int) -> None:
    header = 2 if length < 126 else 4 if length < 65536 else 10
    assert len(text_frame(b"a" * length, masked=False)) == header + length
    assert len(text_frame(b"a" * length, masked=True)) == header + 4 + length


def test_text_frame_is_accepted_by_a_server_protocol_and_refused_unmasked() -> None:
    server = open_server()
    server.receive_data(text_frame("こんにちは".encode(), masked=True))
    [event] = server.events_received()
    assert isinstance(event, Frame) and event.data.decode() == "こんにちは"
    server.receive_data(text_frame(b"unmasked", masked=False))
    assert isinstance(server.parser_exc, ProtocolError)


def test_two_masked_frames_of_one_payload_use_different_keys() -> None:
    payload = b'{"type":"media"}'
    frames = [text_frame(payload, masked=True) for _ in range(50)]
    keys = {raw[2:6] for raw in frames}
    assert len(keys) == 50
    assert len({raw[6:] for raw in frames}) > 1  # so the masked bytes differ too


def test_keys_come_from_urandom_1024_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def urandom(size: int) -> bytes:
        calls.append(size)
        return bytes([len(calls)]) * size

    ws_frames._forget_keys()
    monkeypatch.setattr(os, "urandom", urandom)
    keys = [ws_frames._mask_key() for _ in range(1025)]
    assert calls == [4096, 4096]
    assert keys[0] == b"\x01" * 4 and keys[1023] == b"\x01" * 4
    assert keys[1024] == b"\x02" * 4
    raw = text_frame(b"abcd", masked=True)
    assert raw[2:6] == b"\x02" * 4
    ws_frames._forget_keys()


def test_forget_keys_empties_the_pool() -> None:
    ws_frames._mask_key()
    assert ws_frames._key_pool != b""
    ws_frames._forget_keys()
    assert ws_frames._key_pool == b""
    assert ws_frames._key_at == 0
    assert len(ws_frames._mask_key()) == 4
    assert len(ws_frames._key_pool) == 4096


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_keys() -> None:
    ws_frames._forget_keys()
    ws_frames._mask_key()  # the parent has a pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            emptied = ws_frames._key_pool == b"" and ws_frames._key_at == 0
            os.write(write_end, bytes([emptied]) + ws_frames._mask_key())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        reply = os.read(read_end, 5)
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    parent_next = ws_frames._mask_key()
    assert reply[0] == 1  # the child's pool was emptied at fork
    assert reply[1:] != parent_next


# ----------------------------------------------------------------- frame kinds


@pytest.mark.parametrize(
    ("opcode", "fin", "data_frame"),
    [
        (Opcode.TEXT, True, True),
        (Opcode.TEXT, False, True),
        (Opcode.BINARY, True, True),
        (Opcode.CONT, False, True),
        (Opcode.CONT, True, True),
        (Opcode.PING, True, False),
        (Opcode.PONG, True, False),
        (Opcode.CLOSE, True, False),
    ],
)
@pytest.mark.parametrize("masked", [True, False])
def test_is_data_frame(
    opcode: Opcode, fin: bool, data_frame: bool, masked: bool
) -> None:
    raw = frame(
        opcode, b"\x03\xe8" if opcode is Opcode.CLOSE else b"", masked=masked, fin=fin
    )
    assert is_data_frame(raw) is data_frame
    assert is_data_frame(bytes([raw[0] | 0x40]) + raw[1:]) is data_frame


# ---------------------------------------------------------- websockets' parser


def open_server() -> ServerProtocol:
    """A websockets server protocol after a complete handshake."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    client.send_request(client.connect())
    server = ServerProtocol()
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    server.send_response(server.accept(request))
    assert server.state is State.OPEN
    return server


def test_parser_idle_after_the_handshake() -> None:
    assert parser_at_frame_boundary(open_server()) is True


def test_parser_not_idle_before_the_handshake() -> None:
    server = ServerProtocol()
    assert parser_at_frame_boundary(server) is False
    server.receive_data(b"GET / HTTP/1.1\r\n")
    assert parser_at_frame_boundary(server) is False


def test_parser_not_idle_inside_a_frame() -> None:
    server = open_server()
    raw = text("hello", masked=True)
    server.receive_data(raw[:2])
    assert server.reader.buffer == b""  # taken by websockets: not in the buffer
    assert parser_at_frame_boundary(server) is False
    server.receive_data(raw[2:])
    [event] = server.events_received()
    assert event.data == b"hello"
    assert parser_at_frame_boundary(server) is True


def test_parser_not_idle_while_bytes_sit_in_its_buffer() -> None:
    server = open_server()
    raw = text("hello", masked=True)
    server.receive_data(raw + raw[:1])
    assert server.reader.buffer == raw[:1]
    assert parser_at_frame_boundary(server) is False
    server.receive_data(raw[1:])
    assert len(server.events_received()) == 2
    assert parser_at_frame_boundary(server) is True


def test_parser_idle_on_the_client_side_too() -> None:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    request = client.connect()
    client.send_request(request)
    server = ServerProtocol()
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    server.send_response(server.accept(request))
    assert parser_at_frame_boundary(client) is False  # awaiting the response
    client.receive_data(b"".join(server.data_to_send()))
    assert client.state is State.OPEN
    assert parser_at_frame_boundary(client) is True
    client.receive_data(text("x", masked=False)[:1])
    assert parser_at_frame_boundary(client) is False


def test_websockets_refuses_what_the_reader_hands_over() -> None:
    # The hand-overs are frames websockets' own parser refuses too.
    with pytest.raises(PayloadTooBig):
        reader = StreamReader()
        reader.feed_data(text("a" * 11, masked=True))
        next(Frame.parse(reader.read_exact, mask=True, max_size=10))
    with pytest.raises(ProtocolError):
        reader = StreamReader()
        reader.feed_data(text("a", masked=False))
        next(Frame.parse(reader.read_exact, mask=True))


# ---------------------------------------------------------------- read_frames


def test_read_frames_hands_texts_and_other_frames_on_in_order() -> None:
    ping = frame(Opcode.PING, b"p", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(text("a", masked=True) + ping + text("b", masked=True))
    seen: list[object] = []
    going_on = read_frames(reader, seen.append, lambda raw: seen.append(raw) or True)
    assert going_on is True
    assert seen == ["a", ping, "b"]
    assert reader.rest() == b""


def test_read_frames_stops_where_the_other_side_ends_the_short_path() -> None:
    binary = frame(Opcode.BINARY, b"\x00", masked=True)
    after = text("after", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(text("a", masked=True) + binary + after)
    seen: list[object] = []
    going_on = read_frames(reader, seen.append, lambda raw: seen.append(raw) and False)
    assert going_on is False
    assert seen == ["a", binary]
    assert reader.rest() == after  # not read: websockets gets it


def test_read_frames_ends_the_short_path_at_a_hand_over() -> None:
    bad = frame(Opcode.TEXT, b"\xff", masked=True)
    reader = FrameReader(masked=True, max_size=None)
    reader.feed(text("a", masked=True) + bad)
    seen: list[object] = []
    going_on = read_frames(reader, seen.append, lambda raw: True)
    assert going_on is False
    assert seen == ["a"]
    assert reader.rest() == bad
