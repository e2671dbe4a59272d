"""What the Twilio emulator records: calls and conferences as REST resources.

``Call`` and ``ConferenceRoom`` hold a call's or a room's state, serialise it
as the REST API does (``resource()``) and keep everything it did for
assertions; ``LogEntry``, ``Callback``, ``CallError``, ``CallTimes`` and
``ConferenceEvent`` are the records. No Django; the emulator
(``realtime.emulators.twilio_api``) drives them and re-exports them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from realtime.emulators import twiml
from realtime.emulators.caller import SimulatedCaller, Step
from realtime.emulators.caller_webhook import new_sid
from realtime.emulators.speech_script import Utterance
from realtime.emulators.twilio_far_ends import FarEnd

__all__ = [
    "API_VERSION",
    "CALL_STATUSES",
    "FINAL_STATUSES",
    "STATUS_EVENTS",
    "Call",
    "CallError",
    "CallOptions",
    "CallTimes",
    "Callback",
    "ConferenceEvent",
    "ConferenceRoom",
    "LogEntry",
    "Participant",
    "rfc2822",
    "utc_now",
]

API_VERSION: Final = "2010-04-01"
STATUS_EVENTS: Final = frozenset({"initiated", "ringing", "answered", "completed"})
FINAL_STATUSES: Final = frozenset(
    {"completed", "busy", "no-answer", "failed", "canceled"}
)
CALL_STATUSES: Final = frozenset({"queued", "ringing", "in-progress"}) | FINAL_STATUSES


def rfc2822(moment: datetime | None) -> str | None:
    """Format a time as Twilio's resources do (None stays None)."""
    return None if moment is None else moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------
# What the emulator records


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One thing a call did; ``at`` is seconds since the call was created."""

    at: float
    kind: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Callback:
    """One request the emulator made to a webhook, and how it went."""

    kind: str  # voice status action redirect stream conference recording amd
    url: str  # as requested (GET: with the parameters in the query)
    method: str
    params: Mapping[str, str]
    signature: str
    status_code: int | None  # None: no HTTP response (refused, timed out)
    error: str | None
    call_sid: str | None
    at: float  # time.monotonic()
    response_text: str = ""
    # normal; duplicate (sent again, same idempotency token); late (held back
    # and sent after the call's final callback, newest first)
    delivery: str = "normal"


@dataclass(frozen=True, slots=True)
class CallError:
    """A Twilio error code the call hit (it would show in the Twilio debugger)."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class ConferenceEvent:
    """One conference status event, whether or not anyone subscribed to it."""

    name: str  # conference-start, participant-join …
    params: Mapping[str, str]


@dataclass(slots=True)
class CallTimes:
    """When a call was created, left the CPS queue, was answered and ended.

    Wall-clock ``time.time()`` seconds, so another process can compare them
    with its own clock; ``None`` until it happened.
    """

    created: float
    dequeued: float | None = None
    answered: float | None = None
    ended: float | None = None

    def describe(self) -> dict[str, float | None]:
        return {
            "created": self.created,
            "dequeued": self.dequeued,
            "answered": self.answered,
            "ended": self.ended,
        }


# --------------------------------------------------------------------------
# Calls


@dataclass(slots=True)
class CallOptions:
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset({"completed"})
    machine_detection: str | None = None
    async_amd: bool = False
    async_amd_status_callback: str | None = None
    async_amd_status_callback_method: str = "POST"
    record: bool = False
    recording_status_callback: str | None = None
    recording_status_callback_method: str = "POST"
    timeout: int = 60
    time_limit: int = 14400


class Call:
    """One call: its REST resource, its progress and everything it did.

    Read by tests: ``sid``, ``status``, ``direction``, ``to``, ``from_``,
    ``answered_by``, ``parent_call_sid``, ``resource()`` (the REST JSON);
    ``log`` (``LogEntry`` kinds: status, verb, say, play, pause, amd, update,
    stream-start, stream-stop (Twilio ended it), stream-end (the bridge or the
    caller did), conference-join, hold-music, hold-music-stop,
    conference-left, dial, dial-end, callback, error, application-error,
    unsupported, caller-script-error, hangup, far-end, dequeued, rest-fault,
    callback-held); ``said()``, ``verbs()``,
    ``entries(kind)``, ``status_callbacks()``; ``callbacks`` (every
    ``Callback`` about this call), ``errors`` (``CallError``), ``streams``
    (the ``SimulatedCaller`` of each Media Stream); ``finished`` (an event set
    once the call is over and its final callbacks were sent); ``times``
    (``CallTimes``), ``far_end`` (the ``FarEnd`` it reached), ``talk_s`` (when
    the far end hangs up after answering, drawn or fixed), ``queue_time_ms``
    (time spent in the CPS queue, once it left it),
    ``machine_detection_duration_ms``.

    ``start_time`` is set when the call is dialed (it leaves the queue and is
    initiated), as Twilio documents: "empty if the call has not yet been
    dialed"; a call still queued, or canceled while queued, has none.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        to: str,
        from_: str,
        direction: str,
        options: CallOptions,
        status: str,
        parent_call_sid: str | None = None,
        caller_script: Sequence[Step] | None = None,
        far_end: FarEnd | None = None,
        speech_script: Sequence[Utterance] | None = None,
    ) -> None:
        self.sid = new_sid("CA")
        self.account_sid = account_sid
        self.to = to
        self.from_ = from_
        self.direction = direction
        self.parent_call_sid = parent_call_sid
        self.options = options
        self.status = status
        self.answered_by: str | None = None
        self.date_created = utc_now()
        self.date_updated = self.date_created
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.caller_script = caller_script
        self.far_end = far_end
        # What the caller says to each <Gather input="speech">, in order.
        self.speech_script: list[Utterance] | None = (
            None if speech_script is None else list(speech_script)
        )
        self.times = CallTimes(created=time.time())
        self.talk_s: float | None = None
        self.queue_time_ms: int | None = None
        self.queue_estimate_ms = 0
        self.machine_detection_duration_ms: int | None = None
        self.log: list[LogEntry] = []
        self.callbacks: list[Callback] = []
        self.errors: list[CallError] = []
        self.streams: list[SimulatedCaller] = []
        self.finished = asyncio.Event()
        self.stream_started = asyncio.Event()
        self.streams_changed = asyncio.Condition()  # notified per new stream
        # What is left of ``caller_script`` when a stream ended under it: played
        # on the stream the ``<Connect action>`` opens next (a resume).
        self._script_rest: list[Step] | None = None
        self._created = time.monotonic()
        self._answered_at: float | None = None
        self._ended_at: float | None = None
        self._sequence = 0
        self._held: list[dict[str, str]] = []  # status callbacks sent late
        self._ending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._interpreter: asyncio.Task[None] | None = None
        self._redirect_lock = asyncio.Lock()
        self.status_changed = asyncio.Condition()

    def __repr__(self) -> str:
        return (
            f"<Call {self.sid} {self.direction} {self.from_}→{self.to} {self.status}>"
        )

    # Views for assertions --------------------------------------------------

    def said(self) -> list[str]:
        """Return the text of every ``<Say>`` the call ran, in order."""
        return [str(e.detail["text"]) for e in self.log if e.kind == "say"]

    def verbs(self) -> list[str]:
        """Return the name of every TwiML verb the call ran, in order."""
        return [str(e.detail["verb"]) for e in self.log if e.kind == "verb"]

    def entries(self, kind: str) -> list[LogEntry]:
        """Return the log entries of one kind."""
        return [e for e in self.log if e.kind == kind]

    def status_callbacks(self) -> list[str]:
        """Return the ``CallStatus`` of each status callback sent, in order."""
        return [c.params["CallStatus"] for c in self.callbacks if c.kind == "status"]

    @property
    def duration(self) -> int | None:
        """Seconds from answer to hang-up (Twilio's ``duration``)."""
        if self._answered_at is None or self._ended_at is None:
            return None if self._ended_at is None else 0
        return int(self._ended_at - self._answered_at)

    @property
    def is_finished(self) -> bool:
        return self.finished.is_set()

    def resource(self) -> dict[str, Any]:
        """Return the call as the REST API serialises it."""
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}"
        duration = self.duration
        return {
            "sid": self.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "parent_call_sid": self.parent_call_sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": self.to,
            "from": self.from_,
            "from_formatted": self.from_,
            "phone_number_sid": None,
            "status": self.status,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time),
            "duration": None if duration is None else str(duration),
            "price": None,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": str(
                self.queue_estimate_ms
                if self.queue_time_ms is None
                else self.queue_time_ms
            ),
            "trunk_sid": None,
            "uri": base + ".json",
            "subresource_uris": {
                name: f"{base}/{name_path}.json"
                for name, name_path in (
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"),
                    ("payments", "Payments"),
                    ("events", "Events"),
                    ("siprec", "Siprec"),
                    ("streams", "Streams"),
                    (
                        "user_defined_message_subscriptions",
                        "UserDefinedMessageSubscriptions",
                    ),
                    ("user_defined_messages", "UserDefinedMessages"),
                )
            },
        }

    # Bookkeeping (the emulator's) -------------------------------------------

    def _note(self, kind: str, /, **detail: Any) -> None:
        self.log.append(
            LogEntry(round(time.monotonic() - self._created, 4), kind, detail)
        )

    def _set_status(self, status: str) -> None:
        self.status = status
        self.date_updated = utc_now()
        self._note("status", status=status)


# --------------------------------------------------------------------------
# Conferences


@dataclass(slots=True)
class Participant:
    """A call in a conference room, with the ``<Conference>`` it dialled."""

    call: Call
    settings: twiml.Conference
    joined_at: float
    kicked: asyncio.Event = field(default_factory=asyncio.Event)
    reason_left: str = "participant_hung_up"


class ConferenceRoom:
    """One conference; a room name lives as long as someone is in it.

    Read by tests: ``sid`` (CF…), ``friendly_name``, ``status`` (init,
    in-progress, completed), ``participants`` (CallSid → ``Participant``, those
    in the room now), ``joined`` (every CallSid that joined, in order),
    ``events`` (every ``ConferenceEvent``, subscribed to or not),
    ``recording_sid``, ``reason_ended``, ``call_sid_ending``, and the events
    ``began`` (conference-start) and ``ended`` (conference-end).

    Rules: the room starts once two participants are in it and one of them has
    ``startConferenceOnEnter``; until then the others hear the ``waitUrl``
    (noted in their log). It ends when a participant with
    ``endConferenceOnExit`` leaves (everyone else is let go and goes on with
    their TwiML) or when the last one leaves. Each ``statusCallback`` URL gets
    the events it asked for from its participant's join on; each
    ``recordingStatusCallback`` of a ``record-from-start`` participant gets
    the recording events (``completed`` once the room ends).
    """

    def __init__(self, *, account_sid: str, friendly_name: str) -> None:
        self.sid = new_sid("CF")
        self.account_sid = account_sid
        self.friendly_name = friendly_name
        self.status = "init"
        self.date_created = utc_now()
        self.date_updated = self.date_created
        self.participants: dict[str, Participant] = {}
        self.joined: list[str] = []  # every CallSid that ever joined, in order
        self.events: list[ConferenceEvent] = []
        self.recording_sid: str | None = None
        self.reason_ended: str | None = None
        self.call_sid_ending: str | None = None
        self.ended = asyncio.Event()
        self.began = asyncio.Event()
        self._started_at: float | None = None
        self._recording_started: datetime | None = None
        self._subscribers: dict[str, tuple[str, frozenset[str]]] = {}
        self._recorders: dict[str, tuple[str, frozenset[str], str]] = {}
        self._send_lock = asyncio.Lock()
        self._sequence = 0
        self._sent = 0  # events already posted to subscribers

    def __repr__(self) -> str:
        return f"<ConferenceRoom {self.friendly_name!r} {self.sid} {self.status}>"

    @property
    def started(self) -> bool:
        return self._started_at is not None

    def event_names(self) -> list[str]:
        """Return the name of every conference event so far, in order."""
        return [e.name for e in self.events]

    def resource(self) -> dict[str, Any]:
        """Return the conference as the REST API serialises it."""
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Conferences/{self.sid}"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "friendly_name": self.friendly_name,
            "status": self.status,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "api_version": API_VERSION,
            "region": "us1",
            "reason_conference_ended": self.reason_ended,
            "call_sid_ending_conference": self.call_sid_ending,
            "uri": base + ".json",
            "subresource_uris": {
                "participants": base + "/Participants.json",
                "recordings": base + "/Recordings.json",
            },
        }
