"""TwiML voice documents for the Twilio emulator: parse, and refuse what Twilio refuses.

Pure: no I/O and no Django. ``parse_twiml(text)`` turns a ``<Response>`` document
into a tuple of frozen verb dataclasses; the emulator's interpreter runs them.
Names and defaults follow PROTOCOL B1/B2 and ``twilio.twiml.voice_response``.

Two kinds of failure, as on Twilio:

- a document that is not TwiML (bad XML, a ``<!DOCTYPE``, a root other than
  ``<Response>``, an unknown verb, a bad attribute value) is refused whole by
  ``parse_twiml`` with ``TwimlError`` (12100 or 12200) and nothing of it runs;
- a ``<Stream>`` whose URL Twilio cannot connect to (not ws/wss, a query string,
  a relative URL without a document URL, another track than ``inbound_track``)
  fails only when the ``<Connect>`` runs, so the verbs before it still play:
  ``check_stream(stream, document_url=…)`` raises ``TwimlError`` (31920/31922/
  31923/31941) at that point.

``<Gather>`` parses to ``Gather`` (its attributes checked as Twilio checks
them, ``twiml_gather``); verbs Twilio has but the emulator does not run
(``<Record>``, ``<Start>`` …) parse to ``Unsupported`` so a test can see them
in the call log.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from urllib.parse import urljoin, urlsplit

__all__ = [
    "CONFERENCE_EVENTS",
    "Conference",
    "Connect",
    "Dial",
    "Gather",
    "Hangup",
    "Number",
    "Pause",
    "Play",
    "Redirect",
    "Say",
    "Stream",
    "TwimlError",
    "TwimlErrorCode",
    "Unsupported",
    "Verb",
    "check_stream",
    "is_phone_number",
    "parse_twiml",
]


class TwimlErrorCode(IntEnum):
    """Twilio's error numbers for documents and streams it cannot run."""

    DOCUMENT_PARSE_FAILURE = 12100
    SCHEMA_VALIDATION = 12200
    STREAM_HANDSHAKE = 31920
    STREAM_URL_SCHEME = 31922
    STREAM_MALFORMED_URL = 31923
    STREAM_TRACK = 31941


class TwimlError(Exception):
    """Twilio would not run this TwiML (the call hears an application error)."""

    def __init__(self, message: str, *, code: TwimlErrorCode) -> None:
        super().__init__(f"{message} (Twilio {code.value})")
        self.code = code
        self.reason = message


@dataclass(frozen=True, slots=True)
class Say:
    """Speak ``text``; ``loop`` 0 repeats until something else happens."""

    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Play:
    """Play the audio at ``url`` (or send ``digits`` as DTMF)."""

    url: str
    loop: int = 1
    digits: str | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``length`` seconds."""

    length: int = 1


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Fetch TwiML from ``url`` and run it instead of the rest of this document."""

    url: str
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Stream:
    """A bidirectional Media Stream (inside ``<Connect>``)."""

    url: str
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Connect:
    """Hold the call on a Media Stream until the server closes the socket."""

    stream: Stream
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Conference:
    """A named conference room (inside ``<Dial>``)."""

    name: str
    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    wait_url: str | None = None  # None: Twilio's hold music; "": silence
    wait_method: str = "POST"
    max_participants: int = 250
    record: str = "do-not-record"
    trim: str = "trim-silence"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    recording_status_callback_events: frozenset[str] = frozenset({"completed"})
    participant_label: str | None = None
    coach: str | None = None  # the CallSid this participant coaches (heard by it only)


@dataclass(frozen=True, slots=True)
class Number:
    """A phone number to dial (inside ``<Dial>``, or as its text)."""

    number: str


@dataclass(frozen=True, slots=True)
class Dial:
    """Connect the call to a conference room or another number."""

    target: Conference | Number
    action: str | None = None
    method: str = "POST"
    timeout: int = 30
    time_limit: int = 14400
    caller_id: str | None = None
    record: str = "do-not-record"
    recording_status_callback: str | None = None
    hangup_on_star: bool = False
    answer_on_bridge: bool = False


@dataclass(frozen=True, slots=True)
class Gather:
    """Listen for speech (and/or digits) while the nested verbs play."""

    input: frozenset[str]
    action: str | None = None
    method: str = "POST"
    timeout: int = 5
    speech_timeout: str | None = None  # "auto" or seconds; None: ``timeout``
    language: str = "en-US"
    speech_model: str | None = None
    hints: str | None = None
    action_on_empty_result: bool = False
    partial_result_callback: str | None = None
    nested: tuple[Say | Play | Pause, ...] = ()
    # Values Twilio only warns about: (code, message), logged when it runs.
    warnings: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A real TwiML verb (or noun) the emulator records but does not run."""

    name: str


Verb = Say | Play | Pause | Hangup | Redirect | Connect | Dial | Gather | Unsupported

CONFERENCE_EVENTS: Final = frozenset(
    {"start", "end", "join", "leave", "mute", "hold", "modify", "speaker"}
    | {"announcement"}
)
_RECORDING_EVENTS: Final = frozenset({"in-progress", "completed", "absent"})
# Real verbs the emulator does not run; anything else under <Response> is invalid.
_OTHER_VERBS: Final = frozenset(
    {"Record", "Start", "Stop", "Enqueue", "Leave", "Reject", "Echo"}
    | {"Pay", "Prompt", "Refer", "Sms", "Message", "Queue"}
)
_DIAL_NOUNS: Final = frozenset(
    {"Conference", "Number", "Client", "Sip", "Queue", "Application", "WhatsApp"}
)
_CONNECT_NOUNS: Final = frozenset(
    {"Stream", "Room", "Conversation", "VirtualAgent", "Autopilot"}
    | {"ConversationRelay", "AiSession", "Assistant"}
)
_DIAL_RECORD: Final = frozenset(
    {"do-not-record", "record-from-answer", "record-from-ringing"}
    | {"record-from-answer-dual", "record-from-ringing-dual"}
)
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


def is_phone_number(value: str) -> bool:
    """Tell whether ``value`` is an E.164 number, a ``client:`` or a ``sip:`` URI."""
    if value.startswith(("client:", "sip:")):
        return len(value) > value.index(":") + 1
    return _E164.fullmatch(value) is not None


def schema_error(message: str) -> TwimlError:
    """A document Twilio refuses whole (12200)."""
    return TwimlError(message, code=TwimlErrorCode.SCHEMA_VALIDATION)


def _schema(message: str) -> TwimlError:
    return TwimlError(message, code=TwimlErrorCode.SCHEMA_VALIDATION)


class Attrs:
    """Typed reads of one element's attributes, each refusing bad values."""

    def __init__(self, element: ET.Element) -> None:
        self.tag = element.tag
        self.raw = element.attrib

    def text(self, name: str) -> str | None:
        return self.raw.get(name)

    def url(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None and not value.strip():
            raise _schema(f"<{self.tag} {name}> is empty")
        return value

    def method(self, name: str) -> str:
        value = self.raw.get(name, "POST").upper()
        if value not in ("GET", "POST"):
            raise _schema(f"<{self.tag} {name}> must be GET or POST, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise _schema(f"<{self.tag} {name}> must be true or false, got {value!r}")
        return value.lower() == "true"

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(name)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise _schema(f"<{self.tag} {name}> must be {low}..{high}, got {value!r}")
        return int(value)

    def choice(self, name: str, default: str, allowed: frozenset[str]) -> str:
        value = self.raw.get(name, default)
        if value not in allowed:
            raise _schema(
                f"<{self.tag} {name}> {value!r} is not one of {sorted(allowed)}"
            )
        return value

    def events(self, name: str, allowed: frozenset[str]) -> frozenset[str] | None:
        value = self.raw.get(name)
        if value is None:
            return None
        tokens = value.replace(",", " ").split()
        unknown = [t for t in tokens if t not in allowed]
        if unknown or not tokens:
            raise _schema(
                f"<{self.tag} {name}> has unknown events {unknown or value!r}"
            )
        return frozenset(tokens)


def parse_twiml(text: str | bytes) -> tuple[Verb, ...]:
    """Parse a TwiML voice document into the verbs to run, in order.

    Raises ``TwimlError`` (12100 or 12200) when Twilio would refuse the document.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TwimlError(
                f"document is not UTF-8: {exc}",
                code=TwimlErrorCode.DOCUMENT_PARSE_FAILURE,
            ) from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        # No DTDs: TwiML has none, and entity expansion is a denial of service.
        raise TwimlError(
            "document type declarations are not allowed",
            code=TwimlErrorCode.DOCUMENT_PARSE_FAILURE,
        )
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise TwimlError(
            f"document is not well-formed XML: {exc}",
            code=TwimlErrorCode.DOCUMENT_PARSE_FAILURE,
        ) from None
    if root.tag != "Response":
        raise TwimlError(
            f"root element must be <Response>, got <{root.tag}>",
            code=TwimlErrorCode.DOCUMENT_PARSE_FAILURE,
        )
    return tuple(parse_verb(element) for element in root)


def _body(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def parse_verb(element: ET.Element) -> Verb:
    attrs = Attrs(element)
    tag = element.tag
    if tag == "Say":
        text = _body(element)
        if not text:
            raise _schema("<Say> has no text")
        return Say(
            text=text,
            voice=attrs.text("voice"),
            language=attrs.text("language"),
            loop=attrs.integer("loop", 1, 0, 1000),
        )
    if tag == "Play":
        url = _body(element)
        digits = attrs.text("digits")
        if not url and digits is None:
            raise _schema("<Play> needs a URL or digits")
        return Play(url=url, loop=attrs.integer("loop", 1, 0, 1000), digits=digits)
    if tag == "Pause":
        return Pause(length=attrs.integer("length", 1, 0, 600))
    if tag == "Hangup":
        return Hangup()
    if tag == "Redirect":
        url = _body(element)
        if not url:
            raise _schema("<Redirect> has no URL")
        return Redirect(url=url, method=attrs.method("method"))
    if tag == "Connect":
        return _parse_connect(element, attrs)
    if tag == "Dial":
        return _parse_dial(element, attrs)
    if tag == "Gather":
        from realtime.emulators.twiml_gather import parse_gather

        return parse_gather(element, attrs)
    if tag in _OTHER_VERBS:
        return Unsupported(name=tag)
    raise _schema(f"<{tag}> is not a TwiML voice verb")


def _parse_connect(element: ET.Element, attrs: Attrs) -> Connect | Unsupported:
    children = list(element)
    if len(children) != 1:
        raise _schema(f"<Connect> needs exactly one noun, got {len(children)}")
    noun = children[0]
    if noun.tag not in _CONNECT_NOUNS:
        raise _schema(f"<{noun.tag}> is not a noun of <Connect>")
    if noun.tag != "Stream":
        return Unsupported(name=f"Connect/{noun.tag}")
    return Connect(
        stream=_parse_stream(noun),
        action=attrs.url("action"),
        method=attrs.method("method"),
    )


def _parse_stream(element: ET.Element) -> Stream:
    attrs = Attrs(element)
    url = attrs.url("url")
    if url is None:
        raise _schema("<Stream> has no url")
    parameters: list[tuple[str, str]] = []
    for child in element:
        if child.tag != "Parameter":
            raise _schema(f"<{child.tag}> is not allowed in <Stream>")
        name, value = child.get("name"), child.get("value")
        if not name or value is None:
            raise _schema("<Parameter> needs name and value")
        parameters.append((name, value))
    return Stream(
        url=url.strip(),
        name=attrs.text("name"),
        track=attrs.text("track") or "inbound_track",
        status_callback=attrs.url("statusCallback"),
        status_callback_method=attrs.method("statusCallbackMethod"),
        parameters=tuple(parameters),
    )


def _parse_dial(element: ET.Element, attrs: Attrs) -> Dial | Unsupported:
    children = list(element)
    target: Conference | Number
    if not children:
        number = _body(element)
        if not is_phone_number(number):
            raise _schema(f"<Dial> {number!r} is not a phone number")
        target = Number(number=number)
    elif len(children) > 1 and any(c.tag != "Number" for c in children):
        raise _schema("<Dial> takes one <Conference>, or <Number>s")
    elif children[0].tag not in _DIAL_NOUNS:
        raise _schema(f"<{children[0].tag}> is not a noun of <Dial>")
    elif children[0].tag == "Conference":
        target = _parse_conference(children[0])
    elif children[0].tag == "Number" and len(children) == 1:
        number = _body(children[0])
        if not is_phone_number(number):
            raise _schema(f"<Number> {number!r} is not a phone number")
        target = Number(number=number)
    else:  # <Client>, <Sip>, <Queue>, simultaneous <Number>s …
        return Unsupported(name=f"Dial/{children[0].tag}")
    return Dial(
        target=target,
        action=attrs.url("action"),
        method=attrs.method("method"),
        timeout=attrs.integer("timeout", 30, 1, 600),
        time_limit=attrs.integer("timeLimit", 14400, 1, 86400),
        caller_id=attrs.text("callerId"),
        record=attrs.choice("record", "do-not-record", _DIAL_RECORD),
        recording_status_callback=attrs.url("recordingStatusCallback"),
        hangup_on_star=attrs.flag("hangupOnStar", False),
        answer_on_bridge=attrs.flag("answerOnBridge", False),
    )


def _parse_conference(element: ET.Element) -> Conference:
    attrs = Attrs(element)
    name = _body(element)
    if not name:
        raise _schema("<Conference> has no room name")
    return Conference(
        name=name,
        muted=attrs.flag("muted", False),
        beep=attrs.choice(
            "beep", "true", frozenset({"true", "false", "onEnter", "onExit"})
        ),
        start_conference_on_enter=attrs.flag("startConferenceOnEnter", True),
        end_conference_on_exit=attrs.flag("endConferenceOnExit", False),
        wait_url=attrs.text("waitUrl"),
        wait_method=attrs.method("waitMethod"),
        max_participants=attrs.integer("maxParticipants", 250, 2, 250),
        record=attrs.choice(
            "record", "do-not-record", frozenset({"do-not-record", "record-from-start"})
        ),
        trim=attrs.choice(
            "trim", "trim-silence", frozenset({"trim-silence", "do-not-trim"})
        ),
        status_callback=attrs.url("statusCallback"),
        status_callback_method=attrs.method("statusCallbackMethod"),
        status_callback_events=attrs.events("statusCallbackEvent", CONFERENCE_EVENTS)
        or frozenset(),
        recording_status_callback=attrs.url("recordingStatusCallback"),
        recording_status_callback_method=attrs.method("recordingStatusCallbackMethod"),
        recording_status_callback_events=attrs.events(
            "recordingStatusCallbackEvent", _RECORDING_EVENTS
        )
        or frozenset({"completed"}),
        participant_label=attrs.text("participantLabel"),
        coach=attrs.url("coach"),
    )


def check_stream(stream: Stream, *, document_url: str | None) -> str:
    """Return the absolute WebSocket URL Twilio would connect ``stream`` to.

    A relative URL is resolved against the TwiML document's URL (http → ws,
    https → wss). Raises ``TwimlError`` where Twilio's stream would fail: a
    scheme other than ws/wss (31922; real Twilio accepts only wss, the emulator
    also takes ws for loopback servers), a query string (31920: Twilio drops
    it, so tokens must travel in ``<Parameter>``), an unusable URL (31923), or
    a track other than ``inbound_track`` under ``<Connect>`` (31941).
    """
    if stream.track != "inbound_track":
        raise TwimlError(
            f"<Connect><Stream> supports only inbound_track, got {stream.track!r}",
            code=TwimlErrorCode.STREAM_TRACK,
        )
    url = stream.url
    if "://" not in url:
        if document_url is None:
            raise TwimlError(
                f"relative stream URL {url!r} in TwiML that has no URL",
                code=TwimlErrorCode.STREAM_MALFORMED_URL,
            )
        url = urljoin(document_url, url)
        scheme, rest = url.split("://", 1)
        url = {"http": "ws", "https": "wss"}.get(scheme, scheme) + "://" + rest
    if any(c.isspace() for c in url):
        raise TwimlError(
            f"stream URL {url!r} contains whitespace",
            code=TwimlErrorCode.STREAM_MALFORMED_URL,
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise TwimlError(
            f"stream URL {url!r} is malformed: {exc}",
            code=TwimlErrorCode.STREAM_MALFORMED_URL,
        ) from None
    if parts.scheme not in ("wss", "ws"):
        raise TwimlError(
            f"stream URL scheme {parts.scheme!r} is not supported; use wss",
            code=TwimlErrorCode.STREAM_URL_SCHEME,
        )
    if not parts.hostname:
        raise TwimlError(
            f"stream URL {url!r} has no host", code=TwimlErrorCode.STREAM_MALFORMED_URL
        )
    if parts.query or url.endswith("?"):
        raise TwimlError(
            f"stream URL {url!r} has a query string; pass values with <Parameter>",
            code=TwimlErrorCode.STREAM_HANDSHAKE,
        )
    return url
