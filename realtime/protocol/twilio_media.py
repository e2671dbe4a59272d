"""Twilio Media Streams (bidirectional) messages: parse what Twilio sends, build
what we send back.

Twilio sends JSON text frames: ``connected``, ``start``, ``media``, ``dtmf``,
``mark`` and ``stop`` (PROTOCOL B1). The server may send exactly three:
``media``, ``mark`` and ``clear``, each with the stream's ``streamSid``.

``media`` is the hot path (50 frames a second per call): it costs one
``orjson.loads`` and a few dictionary look-ups. The μ-law payload is never
decoded here; it passes through to the model as the same base64 text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

import orjson

from realtime.protocol.errors import TwilioErrorCode, TwilioProtocolError

__all__ = [
    "MAX_FRAME_CHARS",
    "MAX_PAYLOAD_B64_CHARS",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "MediaFormat",
    "Start",
    "Stop",
    "TwilioEvent",
    "TwilioMessage",
    "clear_message",
    "mark_message",
    "media_message",
    "parse_twilio_message",
]

# Twilio sends 160 bytes (216 base64 characters) per frame; 64 KiB of base64 is
# about 6 s of audio in one frame, far beyond anything legitimate.
MAX_PAYLOAD_B64_CHARS: Final = 64 * 1024
# Checked before parsing, so a huge frame costs nothing to refuse. It leaves
# room for the largest payload plus the envelope and generous customParameters.
MAX_FRAME_CHARS: Final = 2 * MAX_PAYLOAD_B64_CHARS
# Numbers arrive as decimal strings; a longer one is not a real counter.
_MAX_DIGITS: Final = 18


class TwilioEvent(StrEnum):
    """The ``event`` values of Media Streams messages."""

    CONNECTED = "connected"
    START = "start"
    MEDIA = "media"
    DTMF = "dtmf"
    MARK = "mark"
    STOP = "stop"
    CLEAR = "clear"  # server → Twilio only


@dataclass(frozen=True, slots=True)
class Connected:
    """First frame of every stream; carries no stream id."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """The audio format Twilio announces in ``start``."""

    encoding: str
    sample_rate: int
    channels: int

    @property
    def is_mulaw_8k(self) -> bool:
        """Whether this is the G.711 μ-law, 8 kHz mono the bridge relays as is."""
        return (
            self.encoding == "audio/x-mulaw"
            and self.sample_rate == 8000
            and self.channels == 1
        )


@dataclass(frozen=True, slots=True)
class Start:
    """The stream has started; from now on the stream id is known."""

    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    sequence: int
    # Values of the TwiML <Parameter> elements (read-only view).
    custom_parameters: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True, slots=True)
class Media:
    """20 ms of caller audio."""

    stream_sid: str
    payload_b64: str  # μ-law 8 kHz, passed through untouched
    timestamp_ms: int  # since the stream started, on the caller's clock
    chunk: int
    sequence: int
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed a key."""

    stream_sid: str
    digit: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A mark we sent has come back: played, or discarded by ``clear``."""

    stream_sid: str
    name: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream is over (the caller hung up, or the call was redirected)."""

    stream_sid: str
    call_sid: str
    account_sid: str
    sequence: int


TwilioMessage = Connected | Start | Media | Dtmf | Mark | Stop


def _invalid(message: str) -> TwilioProtocolError:
    return TwilioProtocolError(message, code=TwilioErrorCode.INVALID_MESSAGE)


def _obj(parent: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"{where}{key} must be an object, got {_kind(value)}")
    return value


def _str(parent: Mapping[str, object], key: str, where: str) -> str:
    value = parent.get(key)
    if not isinstance(value, str):
        raise _invalid(f"{where}{key} must be a string, got {_kind(value)}")
    return value


def _count(parent: Mapping[str, object], key: str, where: str) -> int:
    """Read a non-negative integer sent as a decimal string (or a JSON integer)."""
    value = parent.get(key)
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
            return int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _invalid(f"{where}{key} must be a non-negative integer, got {value!r:.40}")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return type(value).__name__


def parse_twilio_message(text: str | bytes) -> TwilioMessage:
    """Parse one frame from Twilio's Media Streams socket.

    ``bytes`` means a binary WebSocket frame, which Twilio never sends. Unknown
    fields are ignored; missing or mistyped ones raise ``TwilioProtocolError``.
    """
    if not isinstance(text, str):
        raise TwilioProtocolError(
            f"binary frame of {len(text)} bytes; Media Streams frames are JSON text",
            code=TwilioErrorCode.MALFORMED_MESSAGE,
        )
    if len(text) > MAX_FRAME_CHARS:
        raise _invalid(f"frame of {len(text)} characters exceeds {MAX_FRAME_CHARS}")
    try:
        obj: object = orjson.loads(text)
    except ValueError as exc:  # JSONDecodeError, or invalid surrogates
        raise TwilioProtocolError(
            f"frame is not JSON: {exc}", code=TwilioErrorCode.MALFORMED_MESSAGE
        ) from None
    if not isinstance(obj, dict):
        raise _invalid(f"frame must be a JSON object, got {_kind(obj)}")
    event = obj.get("event")
    if event == "media":  # first: 50 a second
        return _parse_media(obj)
    if event == "mark":
        mark = _obj(obj, "mark", "")
        return Mark(
            stream_sid=_str(obj, "streamSid", ""),
            name=_str(mark, "name", "mark."),
            sequence=_count(obj, "sequenceNumber", ""),
        )
    if event == "start":
        return _parse_start(obj)
    if event == "connected":
        return Connected(
            protocol=_str(obj, "protocol", ""), version=_str(obj, "version", "")
        )
    if event == "dtmf":
        dtmf = _obj(obj, "dtmf", "")
        return Dtmf(
            stream_sid=_str(obj, "streamSid", ""),
            digit=_str(dtmf, "digit", "dtmf."),
            sequence=_count(obj, "sequenceNumber", ""),
        )
    if event == "stop":
        stop = _obj(obj, "stop", "")
        return Stop(
            stream_sid=_str(obj, "streamSid", ""),
            call_sid=_str(stop, "callSid", "stop."),
            account_sid=_str(stop, "accountSid", "stop."),
            sequence=_count(obj, "sequenceNumber", ""),
        )
    if isinstance(event, str):
        raise _invalid(f"unknown event {event!r:.60}")
    raise _invalid(f"event must be a string, got {_kind(event)}")


def _parse_media(obj: Mapping[str, object]) -> Media:
    media = _obj(obj, "media", "")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise _invalid(f"media.payload must be a string, got {_kind(payload)}")
    if len(payload) > MAX_PAYLOAD_B64_CHARS:
        raise _invalid(
            f"media.payload of {len(payload)} characters exceeds "
            f"{MAX_PAYLOAD_B64_CHARS}"
        )
    track = media.get("track", "inbound")
    if not isinstance(track, str):
        raise _invalid(f"media.track must be a string, got {_kind(track)}")
    return Media(
        stream_sid=_str(obj, "streamSid", ""),
        payload_b64=payload,
        timestamp_ms=_count(media, "timestamp", "media."),
        chunk=_count(media, "chunk", "media."),
        sequence=_count(obj, "sequenceNumber", ""),
        track=track,
    )


def _parse_start(obj: Mapping[str, object]) -> Start:
    start = _obj(obj, "start", "")
    tracks = start.get("tracks")
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise _invalid("start.tracks must be a list of strings")
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, str) for v in params.values()
    ):
        raise _invalid("start.customParameters must be an object of strings")
    fmt = _obj(start, "mediaFormat", "start.")
    stream_sid = start.get("streamSid", obj.get("streamSid"))
    if not isinstance(stream_sid, str):
        raise _invalid(f"start.streamSid must be a string, got {_kind(stream_sid)}")
    return Start(
        stream_sid=stream_sid,
        account_sid=_str(start, "accountSid", "start."),
        call_sid=_str(start, "callSid", "start."),
        tracks=tuple(tracks),
        media_format=MediaFormat(
            encoding=_str(fmt, "encoding", "start.mediaFormat."),
            sample_rate=_count(fmt, "sampleRate", "start.mediaFormat."),
            channels=_count(fmt, "channels", "start.mediaFormat."),
        ),
        sequence=_count(obj, "sequenceNumber", ""),
        custom_parameters=MappingProxyType(dict(params)),
    )


# Server → Twilio. Exactly these three events, each with the stream id and nothing
# else Twilio does not expect (31951 on any extra or missing field).


def media_message(stream_sid: str, payload_b64: str) -> str:
    """Return a ``media`` frame queueing base64 μ-law audio for the caller."""
    return orjson.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": payload_b64}}
    ).decode()


def mark_message(stream_sid: str, name: str) -> str:
    """Return a ``mark`` frame; Twilio echoes it once the audio before it played."""
    return orjson.dumps(
        {"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}
    ).decode()


def clear_message(stream_sid: str) -> str:
    """Return a ``clear`` frame: drop queued audio and return pending marks."""
    return orjson.dumps({"event": "clear", "streamSid": stream_sid}).decode()
