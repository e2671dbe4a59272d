"""Twilio Media Streams messages: parsing what Twilio sends, building what we send."""

from __future__ import annotations

import contextlib
import json
import random

import pytest

from realtime.protocol.errors import (
    ProtocolError,
    TwilioErrorCode,
    TwilioProtocolError,
)
from realtime.protocol.twilio_media import (
    MAX_FRAME_CHARS,
    MAX_PAYLOAD_B64_CHARS,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
    clear_message,
    mark_message,
    media_message,
    parse_twilio_message,
)

SILENCE_B64 = "/" * 212 + "/w=="  # 160 bytes of μ-law silence (0xFF)

START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": "MZ1",
    "start": {
        "streamSid": "MZ1",
        "accountSid": "AC1",
        "callSid": "CA1",
        "tracks": ["inbound"],
        "customParameters": {"call_id": "42", "token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def media_frame(**media: object) -> dict[str, object]:
    body: dict[str, object] = {
        "track": "inbound",
        "chunk": "3",
        "timestamp": "40",
        "payload": SILENCE_B64,
    }
    body.update(media)
    return {
        "event": "media",
        "sequenceNumber": "4",
        "streamSid": "MZ1",
        "media": body,
    }


def refused(frame: object) -> TwilioProtocolError:
    text = frame if isinstance(frame, str | bytes) else json.dumps(frame)
    with pytest.raises(TwilioProtocolError) as caught:
        parse_twilio_message(text)
    return caught.value


# ------------------------------------------------------------------ well-formed


def test_connected_is_parsed():
    """The first frame has no stream id and parses to Connected."""
    message = parse_twilio_message(
        '{"event":"connected","protocol":"Call","version":"1.0.0"}'
    )
    assert message == Connected(protocol="Call", version="1.0.0")


def test_start_carries_ids_tracks_parameters_and_format():
    """start gives the stream, call and account ids, custom parameters, format."""
    message = parse_twilio_message(json.dumps(START))
    assert isinstance(message, Start)
    assert (message.stream_sid, message.call_sid, message.account_sid) == (
        "MZ1",
        "CA1",
        "AC1",
    )
    assert message.tracks == ("inbound",)
    assert dict(message.custom_parameters) == {"call_id": "42", "token": "t"}
    assert message.media_format == MediaFormat("audio/x-mulaw", 8000, 1)
    assert message.media_format.is_mulaw_8k
    assert message.sequence == 1


def test_start_custom_parameters_are_read_only():
    """The parsed parameters cannot be changed by accident."""
    message = parse_twilio_message(json.dumps(START))
    assert isinstance(message, Start)
    with pytest.raises(TypeError):
        message.custom_parameters["token"] = "x"  # type: ignore[index]


def test_start_without_custom_parameters_has_an_empty_mapping():
    """customParameters is optional."""
    frame = json.loads(json.dumps(START))
    del frame["start"]["customParameters"]
    message = parse_twilio_message(json.dumps(frame))
    assert isinstance(message, Start)
    assert dict(message.custom_parameters) == {}


def test_media_keeps_the_payload_as_base64_and_reads_counters():
    """media passes the μ-law base64 through and turns string counters into ints."""
    message = parse_twilio_message(json.dumps(media_frame()))
    assert message == Media(
        stream_sid="MZ1",
        payload_b64=SILENCE_B64,
        timestamp_ms=40,
        chunk=3,
        sequence=4,
        track="inbound",
    )


def test_media_accepts_integer_counters():
    """Counters sent as JSON integers are accepted too."""
    message = parse_twilio_message(json.dumps(media_frame(chunk=3, timestamp=40)))
    assert isinstance(message, Media)
    assert (message.chunk, message.timestamp_ms) == (3, 40)


def test_media_ignores_unknown_fields():
    """Extra fields Twilio might add later do not break parsing."""
    frame = media_frame(extra="x")
    frame["future"] = {"x": 1}
    assert isinstance(parse_twilio_message(json.dumps(frame)), Media)


def test_dtmf_mark_and_stop_are_parsed():
    """dtmf gives the digit, mark the name, stop the call sid."""
    dtmf = {
        "event": "dtmf",
        "sequenceNumber": "5",
        "streamSid": "MZ1",
        "dtmf": {"track": "inbound_track", "digit": "5"},
    }
    mark = {
        "event": "mark",
        "sequenceNumber": "6",
        "streamSid": "MZ1",
        "mark": {"name": "a1"},
    }
    stop = {
        "event": "stop",
        "sequenceNumber": "7",
        "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
    }
    assert parse_twilio_message(json.dumps(dtmf)) == Dtmf("MZ1", "5", 5)
    assert parse_twilio_message(json.dumps(mark)) == Mark("MZ1", "a1", 6)
    assert parse_twilio_message(json.dumps(stop)) == Stop("MZ1", "CA1", "AC1", 7)


# ------------------------------------------------------------------ malformed


def test_binary_frame_is_malformed():
    """A binary frame is refused with Twilio's 31950 (malformed message)."""
    error = refused(b'{"event":"media"}')
    assert error.code is TwilioErrorCode.MALFORMED_MESSAGE
    assert "binary frame" in str(error)
    assert isinstance(error, ProtocolError)


def test_non_json_is_malformed():
    """Text that is not JSON is refused with 31950."""
    error = refused("{not json")
    assert error.code is TwilioErrorCode.MALFORMED_MESSAGE
    assert "not JSON" in str(error)


@pytest.mark.parametrize("frame", ["[]", '"media"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_invalid(frame):
    """JSON arrays, strings, numbers and null are refused with 31951."""
    error = refused(frame)
    assert error.code is TwilioErrorCode.INVALID_MESSAGE
    assert "must be a JSON object" in str(error)


def test_unknown_event_is_invalid():
    """An event name Twilio never sends is refused and named in the message."""
    error = refused({"event": "hello", "streamSid": "MZ1"})
    assert error.code is TwilioErrorCode.INVALID_MESSAGE
    assert "unknown event 'hello'" in str(error)


@pytest.mark.parametrize("frame", [{}, {"event": 3}, {"event": None}])
def test_missing_or_non_string_event_is_invalid(frame):
    """Without a string event there is nothing to dispatch on."""
    assert "event must be a string" in str(refused(frame))


def test_clear_from_twilio_is_an_unknown_event():
    """clear only goes from us to Twilio; receiving one is refused."""
    assert "unknown event 'clear'" in str(refused({"event": "clear"}))


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (media_frame(payload=123), "media.payload must be a string"),
        (media_frame(payload=None), "media.payload must be a string"),
        (media_frame(timestamp="soon"), "media.timestamp must be a non-negative"),
        (media_frame(timestamp="-20"), "media.timestamp must be a non-negative"),
        (media_frame(chunk=True), "media.chunk must be a non-negative"),
        (media_frame(chunk="1" * 40), "media.chunk must be a non-negative"),
        (media_frame(track=7), "media.track must be a string"),
        ({"event": "media", "streamSid": "MZ1"}, "media must be an object"),
        ({"event": "media", "media": "x"}, "media must be an object, got str"),
        (
            {**media_frame(), "streamSid": None},
            "streamSid must be a string",
        ),
        (
            {**media_frame(), "sequenceNumber": "four"},
            "sequenceNumber must be a non-negative",
        ),
    ],
)
def test_media_with_wrong_fields_is_invalid(frame, fragment):
    """Missing or mistyped media fields are refused with a message naming them."""
    error = refused(frame)
    assert error.code is TwilioErrorCode.INVALID_MESSAGE
    assert fragment in str(error)


def test_huge_payload_is_refused():
    """A payload past the bound is refused without being decoded."""
    frame = media_frame(payload="A" * (MAX_PAYLOAD_B64_CHARS + 4))
    assert "exceeds" in str(refused(frame))


def test_huge_frame_is_refused_before_parsing():
    """A frame past the size bound is refused before json.loads runs."""
    text = '{"event":"media","pad":"' + "x" * MAX_FRAME_CHARS + '"}'
    error = refused(text)
    assert "exceeds" in str(error)
    assert error.code is TwilioErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    ("mark", "fragment"),
    [
        (None, "mark must be an object"),
        ("a1", "mark must be an object"),
        ({}, "mark.name must be a string"),
        ({"name": 1}, "mark.name must be a string"),
    ],
)
def test_mark_without_a_name_object_is_invalid(mark, fragment):
    """A mark needs a mark object holding a string name (PROTOCOL C9)."""
    frame: dict[str, object] = {"event": "mark", "sequenceNumber": "2"}
    frame["streamSid"] = "MZ1"
    if mark is not None:
        frame["mark"] = mark
    assert fragment in str(refused(frame))


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("start",), "x", "start must be an object"),
        (("start", "tracks"), "inbound", "start.tracks must be a list of strings"),
        (("start", "tracks"), [1], "start.tracks must be a list of strings"),
        (("start", "customParameters"), {"a": 1}, "customParameters must be"),
        (("start", "mediaFormat"), None, "start.mediaFormat must be an object"),
        (("start", "mediaFormat", "sampleRate"), "fast", "sampleRate must be"),
        (("start", "callSid"), 5, "start.callSid must be a string"),
        (("start", "streamSid"), 5, "start.streamSid must be a string"),
    ],
)
def test_start_with_wrong_fields_is_invalid(path, value, fragment):
    """Every start field the bridge relies on is checked."""
    frame = json.loads(json.dumps(START))
    target = frame
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert fragment in str(refused(frame))


def test_dtmf_and_stop_need_their_objects():
    """dtmf without a digit and stop without a callSid are refused."""
    assert "dtmf.digit" in str(
        refused({"event": "dtmf", "sequenceNumber": "2", "streamSid": "M", "dtmf": {}})
    )
    assert "stop.callSid" in str(
        refused({"event": "stop", "sequenceNumber": "2", "streamSid": "M", "stop": {}})
    )


def test_random_json_never_escapes_as_another_exception():
    """Whatever JSON arrives, parsing returns a message or a TwilioProtocolError."""
    rng = random.Random(7)
    leaves: list[object] = [None, True, 0, -1, 1.5, "", "x", "1", [], {}]
    keys = ["event", "media", "payload", "mark", "name", "start", "streamSid"]
    events = ["media", "mark", "start", "stop", "dtmf", "connected", "nope"]

    def value(depth: int) -> object:
        if depth > 3 or rng.random() < 0.4:
            return rng.choice(leaves + events)
        if rng.random() < 0.2:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(2000):
        frame = value(0)
        if isinstance(frame, dict) and rng.random() < 0.7:
            frame["event"] = rng.choice(events)
        with contextlib.suppress(TwilioProtocolError):
            parse_twilio_message(json.dumps(frame))


# ------------------------------------------------------------------ server → Twilio


def test_outbound_messages_have_exactly_the_expected_shape():
    """media, mark and clear carry streamSid and nothing Twilio would refuse."""
    assert json.loads(media_message("MZ1", "AAAA")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "AAAA"},
    }
    assert json.loads(mark_message("MZ1", "a7")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "a7"},
    }
    assert json.loads(clear_message("MZ1")) == {"event": "clear", "streamSid": "MZ1"}


def test_outbound_messages_escape_untrusted_text():
    """Quotes in a name cannot break the JSON frame."""
    assert json.loads(mark_message("MZ1", 'a"}'))["mark"]["name"] == 'a"}'
