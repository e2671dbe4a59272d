"""The bridge of one call as a pure state machine: events in, actions out.

The asyncio glue owns two connections: the caller's transport (Twilio Media
Streams for the phone, WebRTC for the browser) and the OpenAI Realtime socket.
It parses each event, hands it to ``BridgeState`` with the current time, and
performs the actions it gets back, in order::

    state = BridgeState(session=config, greeting="Greet the caller …")
    perform(state.on_model_connected())                 # session.update
    perform(state.on_twilio_message(parse_twilio_message(frame), now_ms=now))
    perform(state.on_server_event(parse_server_event(frame), now_ms=now))
    perform(state.on_tool_result(call_id, output_json))  # when a tool is done

A transport other than Twilio's feeds the same machine through
``on_caller_start``, ``on_caller_audio``, ``on_playback_mark`` and
``on_caller_stop``. ``ModelCommand`` actions go to the model socket as
``action.to_json()``; ``CallerCommand`` actions (audio, mark, clear) go to the
caller's transport (Twilio's sends ``to_json()``); the others (run a tool, save
a transcript, hang up, …) are the glue's to carry out. The clock is always
passed in, never read, and nothing here does I/O.

The caller's audio format comes from the session config
(``SessionConfig.audio``: μ-law 8 kHz for Twilio, PCM16 24 kHz for the
browser); the model uses the same format both ways, so audio is never converted
here. Audio is counted in bytes of that format.

Outbound audio is re-chunked into whole 20 ms multiples, sent at once in frames
of at most two 20 ms frames (``OUTBOUND_FRAME_BYTES``, 320 bytes of μ-law); only
a part of a 20 ms frame waits for the next delta, and the tail is flushed when
the item's audio is done. A mark follows an item's first batch of frames, then a
batch at most every 200 ms of audio, named by a counter; the transport echoes it
once the caller has heard the audio before it (Twilio does this itself; the
WebRTC transport from the page's playback reports and the RTP clock, with the
time it was played), which tells how much of an item the caller has heard. At a
barge-in the heard position runs on from the last echo at the playback rate,
short of the next pending mark.

Barge-in (``speech_started``) clears Twilio and truncates every item still
playing at its heard position; ``clear`` returns all pending marks, which are
then ignored. Audio of the interrupted response is dropped from then on.

A supervisor's barge or take-over pauses the AI (``pause``; F-75, see
``supervision_state``): its audio is cut as at a barge-in, and no response is
made until ``resume`` gives the model a note of what was said meanwhile.

response.create is serialised: requests (greeting, tool follow-up, operator
instruction, goodbye) wait in one queue and go out one at a time, only when no
response is active, none is in flight, and the server is not about to answer the
caller by itself. Each carries its request id in ``metadata`` and ``event_id``
so response.created and errors can be matched to it.
"""

from __future__ import annotations

import binascii
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from realtime.protocol.caller_audio import MULAW_8K
from realtime.protocol.errors import RealtimeProtocolError
from realtime.protocol.greeting import (
    CUT_ITEM_ID,
    GREETING_ITEM_ID,
    CachedGreeting,
    GreetingRecorder,
    GreetingSpoken,
    heard_text,
)
from realtime.protocol.openai_events import (
    FunctionCallArgumentsDone,
    FunctionTool,
    InputAudioCommitted,
    InputAudioTimeoutTriggered,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    Role,
    ServerError,
    ServerEvent,
    SessionConfig,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Usage,
    conversation_item_delete,
    conversation_item_function_output,
    conversation_item_message,
    conversation_item_truncate,
    input_audio_buffer_append,
    response_cancel,
    response_create,
    session_format_ok,
    session_turn_flags,
    session_update,
)
from realtime.protocol.supervision_state import Hold, PauseMode, paused_session
from realtime.protocol.twilio_media import (
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioMessage,
    clear_message,
    mark_message,
    media_message,
)

__all__ = [
    "MARK_PREFIX",
    "OUTBOUND_FRAME_BYTES",
    "SAY_TEMPLATE",
    "Action",
    "AddMessage",
    "AddToolOutput",
    "AppendAudio",
    "BridgeFigures",
    "BridgeState",
    "BroadcastPartial",
    "CallerCommand",
    "CancelResponse",
    "ClearCaller",
    "CreateResponse",
    "DeleteItem",
    "DigitPressed",
    "GreetingSpoken",
    "HangUp",
    "ItemAudio",
    "ModelCommand",
    "RunTool",
    "SaveTranscript",
    "SendAudio",
    "SendMark",
    "SessionMisconfigured",
    "Truncate",
    "TwilioCommand",
    "UpdateSession",
    "reseed_messages",
]

BYTES_PER_MS: Final = MULAW_8K.bytes_per_ms  # the phone's μ-law: one byte a sample
TWILIO_FRAME_BYTES: Final = MULAW_8K.frame_bytes  # 20 ms, the unit Twilio uses
OUTBOUND_FRAME_BYTES: Final = 2 * TWILIO_FRAME_BYTES
OUTBOUND_FRAMES: Final = 2  # frames of 20 ms in one outbound message, at most
# A mark every 200 ms (and one after an item's first frames); between echoes the
# heard position is interpolated at the playback rate, so sparser marks cost no
# precision, and each saves two WebSocket messages.
MARK_SPACING_MS: Final = 200
MARK_SPACING_BYTES: Final = MARK_SPACING_MS * BYTES_PER_MS
MARK_PREFIX: Final = "a"
MAX_PENDING_MARKS: Final = 1024  # ≥ 200 s of queued audio at the spacing above
MAX_BUFFERED_INPUT_FRAMES: Final = 250  # 5 s of 20 ms caller frames
MAX_PENDING_RESPONSES: Final = 8
MAX_TRACKED_ITEMS: Final = 64
MAX_TOOL_CALLS: Final = 32
MAX_MUTED_IDS: Final = 64
MAX_TURN_LATENCIES: Final = 1024
MAX_TRANSCRIPT_CHARS: Final = 16_000
MAX_RESEED_LINES: Final = 40
MAX_RESEED_CHARS: Final = 8_000
# After the caller stops, the server's own response is expected this soon; until
# then no queued response.create is sent, so the two cannot collide.
AUTO_RESPONSE_GRACE_MS: Final = 2_000
REQUEST_METADATA_KEY: Final = "bridge_request"
ACTIVE_RESPONSE_CODE: Final = "conversation_already_has_active_response"
EVENT_ID_PREFIX: Final = "evt_"  # + request id: the event_id of a response.create
# The line goes in Japanese corner brackets: a clear boundary for the model, and
# what the demo's fake speaks.
SAY_TEMPLATE: Final = (
    "Say exactly the following to the caller, in a natural voice, then stop: 「{text}」"
)

Speaker = Literal["customer", "ai", "agent"]  # agent: a supervisor (F-75)
_Purpose = Literal["greeting", "tool", "instruct", "goodbye", "resume"]


# ---------------------------------------------------------------- actions


class ModelCommand:
    """An action to send on the model socket as ``to_json()``."""

    __slots__ = ()

    def to_json(self) -> str:
        """Return the client event as a JSON text frame."""
        raise NotImplementedError


class CallerCommand:
    """An action for the caller's transport: audio, a mark, or a clear.

    The Twilio transport sends ``to_json()`` (a Media Streams message); another
    transport reads the fields.
    """

    __slots__ = ()

    def to_json(self) -> str:
        """Return the Media Streams message as a JSON text frame."""
        raise NotImplementedError


TwilioCommand = CallerCommand  # the phone's transport, the first caller transport


@dataclass(frozen=True, slots=True)
class UpdateSession(ModelCommand):
    """Configure the model session (the caller's audio format both ways)."""

    config: SessionConfig

    def to_json(self) -> str:
        return session_update(self.config)


@dataclass(frozen=True, slots=True)
class AppendAudio(ModelCommand):
    """Forward caller audio, base64 exactly as the transport gave it."""

    payload_b64: str

    def to_json(self) -> str:
        return input_audio_buffer_append(self.payload_b64)


@dataclass(frozen=True, slots=True)
class AddMessage(ModelCommand):
    """Add a text message to the conversation (context; no response by itself)."""

    role: Role
    text: str
    item_id: str | None = None
    previous_item_id: str | None = None

    def to_json(self) -> str:
        return conversation_item_message(
            self.role,
            self.text,
            item_id=self.item_id,
            previous_item_id=self.previous_item_id,
        )


@dataclass(frozen=True, slots=True)
class DeleteItem(ModelCommand):
    """Remove an item from the conversation."""

    item_id: str

    def to_json(self) -> str:
        return conversation_item_delete(self.item_id)


@dataclass(frozen=True, slots=True)
class AddToolOutput(ModelCommand):
    """Give the model a tool's output for ``call_id``."""

    call_id: str
    output_json: str

    def to_json(self) -> str:
        return conversation_item_function_output(self.call_id, self.output_json)


@dataclass(frozen=True, slots=True)
class Truncate(ModelCommand):
    """Cut an assistant item's audio at what the caller heard."""

    item_id: str
    audio_end_ms: int
    content_index: int = 0

    def to_json(self) -> str:
        return conversation_item_truncate(
            self.item_id, self.audio_end_ms, content_index=self.content_index
        )


@dataclass(frozen=True, slots=True)
class CreateResponse(ModelCommand):
    """Ask for a response; ``request_id`` comes back in its metadata."""

    request_id: str
    instructions: str | None = None
    tool_choice: str | None = None

    def to_json(self) -> str:
        return response_create(
            instructions=self.instructions,
            tool_choice=self.tool_choice,
            metadata={REQUEST_METADATA_KEY: self.request_id},
            event_id=f"{EVENT_ID_PREFIX}{self.request_id}",
        )


@dataclass(frozen=True, slots=True)
class CancelResponse(ModelCommand):
    """Cancel the active response (only sent when interrupt_response is off)."""

    response_id: str

    def to_json(self) -> str:
        return response_cancel(self.response_id)


@dataclass(frozen=True, slots=True)
class SendAudio(CallerCommand):
    """Queue whole 20 ms frames of audio (the session's format) for the caller."""

    stream_sid: str
    payload_b64: str

    def to_json(self) -> str:
        return media_message(self.stream_sid, self.payload_b64)


@dataclass(frozen=True, slots=True)
class SendMark(CallerCommand):
    """Queue a mark after the audio sent so far."""

    stream_sid: str
    name: str

    def to_json(self) -> str:
        return mark_message(self.stream_sid, self.name)


@dataclass(frozen=True, slots=True)
class ClearCaller(CallerCommand):
    """Drop the audio queued for the caller (barge-in)."""

    stream_sid: str

    def to_json(self) -> str:
        return clear_message(self.stream_sid)


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run a tool; answer with ``BridgeState.on_tool_result(call_id, …)``."""

    call_id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class SaveTranscript:
    """Persist one utterance. AI lines come once their audio has played."""

    speaker: Speaker
    text: str
    item_id: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class BroadcastPartial:
    """Show a partial transcript live (not persisted)."""

    speaker: Speaker
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class DigitPressed:
    """The caller pressed a key."""

    digit: str


@dataclass(frozen=True, slots=True)
class SessionMisconfigured:
    """session.updated does not show the caller's format both ways; unusable call."""

    detail: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The call is over: close both sockets and finalise ("stop", "goodbye", …)."""

    reason: str


Action = (
    UpdateSession
    | AppendAudio
    | AddMessage
    | AddToolOutput
    | Truncate
    | CreateResponse
    | CancelResponse
    | SendAudio
    | SendMark
    | ClearCaller
    | RunTool
    | SaveTranscript
    | BroadcastPartial
    | DigitPressed
    | SessionMisconfigured
    | HangUp
    | DeleteItem
    | GreetingSpoken
)


@dataclass(frozen=True, slots=True)
class ItemAudio:
    """Where one AI item's audio stands, in bytes of the session's audio format."""

    item_id: str
    received_bytes: int  # from the model
    sent_bytes: int  # to the caller's transport
    heard_bytes: int  # played, as proven by echoed marks
    bytes_per_ms: int = BYTES_PER_MS

    @property
    def heard_ms(self) -> int:
        """Milliseconds of the item the caller has heard."""
        return self.heard_bytes // self.bytes_per_ms


@dataclass(frozen=True, slots=True)
class BridgeFigures:
    """Counters of one call so far."""

    usage: Usage
    responses: int
    start_to_first_audio_ms: int | None  # caller start → first frame to caller
    turn_latencies_ms: tuple[int, ...]  # speech stopped → first answer audio
    barge_ins: int
    input_frames_dropped: int  # caller audio lost before the session was ready
    stale_audio_bytes_dropped: int  # model audio after a barge-in, never played
    audio_bytes_from_model: int
    audio_bytes_to_caller: int


def reseed_messages(
    lines: Sequence[tuple[str, str]],
    *,
    max_lines: int = MAX_RESEED_LINES,
    max_chars: int = MAX_RESEED_CHARS,
) -> list[AddMessage]:
    """Turn saved transcript lines ``(speaker, text)`` into context messages.

    Keeps the latest lines within the bounds. "customer" becomes a user message,
    "ai" an assistant message, any other speaker a system note.
    """
    kept: list[AddMessage] = []
    chars = 0
    for speaker, text in reversed(lines):
        if len(kept) >= max_lines or chars + len(text) > max_chars:
            break
        chars += len(text)
        if speaker == "customer":
            kept.append(AddMessage("user", text))
        elif speaker == "ai":
            kept.append(AddMessage("assistant", text))
        else:
            kept.append(AddMessage("system", f"{speaker}: {text}"))
    kept.reverse()
    return kept


# ---------------------------------------------------------------- bookkeeping


@dataclass(slots=True)
class _Request:
    request_id: str
    purpose: _Purpose
    system_text: str | None = None
    instructions: str | None = None
    tool_choice: str | None = None


def _event_id(request: _Request) -> str:
    return f"{EVENT_ID_PREFIX}{request.request_id}"


@dataclass(slots=True)
class _AiItem:
    """Audio and transcript of one assistant item, in bytes of the audio format."""

    item_id: str
    response_id: str
    generation: int
    buffer: bytearray = field(default_factory=bytearray)
    received: int = 0  # from the model
    sent: int = 0  # to the caller's transport
    heard: int = 0  # confirmed played by an echoed mark
    heard_at_ms: int | None = None  # when the mark that proved ``heard`` came back
    marked: int = 0  # ``sent`` at the last mark
    audio_done: bool = False
    cut: bool = False  # stopped by a barge-in
    final: bool = False  # its response is done
    parts: list[str] = field(default_factory=list)
    parts_chars: int = 0
    transcript: str | None = None
    saved: bool = False

    @property
    def settled(self) -> bool:
        """Whether nothing of this item is still to be played."""
        return self.cut or (self.audio_done and self.heard >= self.sent)


@dataclass(slots=True)
class _Call:
    call_id: str
    name: str | None
    response_id: str
    ran: bool = False


class _RecentIds:
    """A set that forgets its oldest entries beyond ``size``."""

    __slots__ = ("_ids", "_size")

    def __init__(self, size: int) -> None:
        self._ids: dict[str, None] = {}
        self._size = size

    def add(self, key: str) -> None:
        self._ids[key] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def discard(self, key: str) -> None:
        self._ids.pop(key, None)

    def clear(self) -> None:
        self._ids.clear()


# ---------------------------------------------------------------- the machine


class BridgeState:
    """Bookkeeping of one call's bridge (see the module docstring)."""

    def __init__(
        self,
        *,
        session: SessionConfig,
        greeting: str | None = None,
        frame_bytes: int | None = None,
        cached_greeting: CachedGreeting | None = None,
        record_greeting: bool = False,
    ) -> None:
        """Start a call; with ``greeting``, the AI speaks first.

        ``greeting`` is the rendered instruction, added as a system message
        before the greeting response once the session is confirmed and the
        caller's stream id is known. ``frame_bytes`` caps one outbound message
        (default: two 20 ms frames of ``session.audio``).

        With ``cached_greeting`` (F-73) that audio plays at the caller's start
        instead, and the model gets its text as an assistant item, no response
        (``realtime.protocol.greeting``). With ``record_greeting`` the live
        greeting's audio comes back as ``GreetingSpoken`` once it is done.
        """
        audio = session.audio
        unit = audio.frame_bytes
        if frame_bytes is None:
            frame_bytes = OUTBOUND_FRAMES * unit
        if frame_bytes <= 0 or frame_bytes % unit:
            raise ValueError(f"frame_bytes {frame_bytes} is not a multiple of {unit}")
        self._config = session
        self._audio = audio
        self._bytes_per_ms = audio.bytes_per_ms
        self._unit = unit  # one 20 ms frame
        self._mark_spacing = MARK_SPACING_MS * audio.bytes_per_ms
        self._frame = frame_bytes
        self._now = 0
        # caller side
        self._stream_sid: str | None = None
        self._call_sid: str | None = None
        self._start_ms: int | None = None
        self._ended = False
        self._closing = False
        # model session
        self._generation = 0
        self._confirmed = False
        self._interrupt_response = session.interrupt_response
        self._create_response = session.create_response
        self._backlog: deque[str] = deque(maxlen=MAX_BUFFERED_INPUT_FRAMES)
        self._early_context: deque[AddMessage] = deque(maxlen=MAX_PENDING_RESPONSES)
        self._reseed: list[AddMessage] = []
        # responses
        self._queue: deque[_Request] = deque()
        self._requests = 0
        self._inflight: _Request | None = None
        self._active_id: str | None = None
        self._active_request: _Request | None = None
        self._cancel_sent = False
        self._blocked_until_done = False
        self._caller_speaking = False
        self._auto_deadline: int | None = None
        self._muted = _RecentIds(MAX_MUTED_IDS)
        self._finished = _RecentIds(MAX_MUTED_IDS)  # items saved and forgotten
        self._goodbye_response: str | None = None
        self._goodbye_done = False
        # audio and marks
        self._items: dict[str, _AiItem] = {}
        self._marks: deque[tuple[int, str, int]] = deque(maxlen=MAX_PENDING_MARKS)
        self._mark_counter = 0
        # tools
        self._calls: dict[str, _Call] = {}
        self._running: set[str] = set()
        # caller turns committed whose transcription is still to come
        self._transcribing = _RecentIds(MAX_TRACKED_ITEMS)
        # figures
        self._usage = Usage()
        self._responses = 0
        self._first_audio_ms: int | None = None
        self._answer_since: int | None = None
        self._latencies: deque[int] = deque(maxlen=MAX_TURN_LATENCIES)
        self._barge_ins = 0
        self._input_dropped = 0
        self._stale_bytes = 0
        self._bytes_in = 0
        self._bytes_out = 0
        # the instant greeting (F-73)
        self._cached = cached_greeting
        # What the model is told was said (all of it, or the part heard), when due.
        self._cached_text = cached_greeting.text if cached_greeting else ""
        self._cached_due = cached_greeting is not None
        self._cached_told = -1  # the generation whose model has its item
        self._record_greeting = record_greeting and cached_greeting is None
        self._recorder: GreetingRecorder | None = None
        # A supervisor holding the call (F-75, ``supervision_state``): the AI paused.
        self._hold: Hold | None = None
        if greeting is not None and cached_greeting is None:
            self._enqueue("greeting", system_text=greeting)

    # ------------------------------------------------------------ read-only view

    @property
    def stream_sid(self) -> str | None:
        """The caller stream's id (Twilio's streamSid), known from the start on."""
        return self._stream_sid

    @property
    def call_sid(self) -> str | None:
        """The caller's call id (Twilio's CallSid), known from the start on."""
        return self._call_sid

    @property
    def ended(self) -> bool:
        """Whether the call is over; every entry point then returns no action."""
        return self._ended

    @property
    def session_confirmed(self) -> bool:
        """Whether session.updated confirmed the caller's audio format both ways."""
        return self._confirmed

    @property
    def active_response_id(self) -> str | None:
        """The response the model is producing, if any."""
        return self._active_id

    @property
    def quiet(self) -> bool:
        """Whether the call is between turns, so its stream can be handed over (F-69).

        The stream has started; no response is active, requested or queued (the
        greeting included), none is expected from the server for a finished caller
        turn; every AI item sent to Twilio has been heard up to its last mark (or
        was cut); no tool call awaits its result; the caller is not speaking and
        every committed caller turn has its transcript in.
        """
        deadline = self._auto_deadline
        return (
            not self._ended
            and self._hold is None  # a supervisor's hold does not move with a stream
            and self._stream_sid is not None
            and self._active_id is None
            and self._inflight is None
            and not self._queue
            and not self._running
            and not self._caller_speaking
            and (deadline is None or self._now >= deadline)
            and not self._transcribing
            and all(item.settled for item in self._items.values())
        )

    def item_audio(self, item_id: str) -> ItemAudio | None:
        """Return the audio progress of an AI item still tracked, else None."""
        item = self._items.get(item_id)
        if item is None:
            return None
        return ItemAudio(
            item_id, item.received, item.sent, item.heard, self._bytes_per_ms
        )

    def figures(self) -> BridgeFigures:
        """Return a snapshot of the call's counters."""
        return BridgeFigures(
            usage=self._usage,
            responses=self._responses,
            start_to_first_audio_ms=self._first_audio_ms,
            turn_latencies_ms=tuple(self._latencies),
            barge_ins=self._barge_ins,
            input_frames_dropped=self._input_dropped,
            stale_audio_bytes_dropped=self._stale_bytes,
            audio_bytes_from_model=self._bytes_in,
            audio_bytes_to_caller=self._bytes_out,
        )

    # ------------------------------------------------------------ model socket

    def on_model_connected(self) -> list[Action]:
        """Return the session.update to send first on a new model socket."""
        return [UpdateSession(self._config)]

    def add_tools(self, tools: Sequence[FunctionTool]) -> list[Action]:
        """Add function tools to the session while the call goes on (issue 18).

        Returns one session.update with the whole session and the new tools (none
        if every name is there already); a reconnect's session.update keeps them.
        """
        known = {tool.name for tool in self._config.tools}
        new = tuple(tool for tool in tools if tool.name not in known)
        if self._ended or not new:
            return []
        self._config = replace(self._config, tools=self._config.tools + new)
        return [UpdateSession(self._session_now())]

    def on_model_reconnected(
        self, transcript: Sequence[tuple[str, str]]
    ) -> list[Action]:
        """Forget the lost model session, keeping the caller side.

        Returns the session.update for the new socket (after any tail audio of
        the old session). Once session.updated confirms, ``transcript`` (saved
        ``(speaker, text)`` lines) is re-seeded as context, then buffered caller
        audio and unsent or unfinished response requests follow. Tool calls still
        running are forgotten: their results are ignored.
        """
        if self._ended:
            return []
        actions: list[Action] = []
        for item in self._items.values():
            if not item.audio_done and not item.cut:
                actions += self._flush_tail(item)
                item.audio_done = True
            item.final = True
            self._finalise_transcript(item)
        for request in (self._inflight, self._active_request):
            if request is not None:
                self._queue.appendleft(request)
        self._generation += 1
        self._confirmed = False
        session = self._session_now()  # still paused, if a supervisor holds the call
        self._interrupt_response = session.interrupt_response
        self._create_response = session.create_response
        self._inflight = self._active_request = self._active_id = None
        self._cancel_sent = self._caller_speaking = self._blocked_until_done = False
        self._auto_deadline = self._answer_since = None
        self._muted.clear()
        self._calls.clear()
        self._running.clear()
        self._transcribing.clear()
        self._reseed = reseed_messages(transcript)
        self._recorder = None
        # A cached greeting not yet in the saved lines goes to the new session too.
        self._cached_due = GREETING_ITEM_ID in self._items
        actions.append(UpdateSession(session))
        return actions

    def on_server_event(self, event: ServerEvent, *, now_ms: int) -> list[Action]:
        """Handle one parsed server event.

        Raises ``RealtimeProtocolError`` when an audio delta is not base64 (the
        state is then unchanged).
        """
        if self._ended:
            return []
        self._now = now_ms
        if isinstance(event, OutputAudioDelta):
            return self._on_audio_delta(event, now_ms)
        if isinstance(event, OutputAudioTranscriptDelta):
            if event.item_id in self._muted or event.item_id in self._finished:
                return []
            self._add_part(self._item(event.item_id, event.response_id), event.delta)
            return [BroadcastPartial("ai", event.item_id, event.delta)]
        if isinstance(event, SpeechStarted):
            return self._on_speech_started()
        if isinstance(event, SpeechStopped):
            self._caller_speaking = False
            self._answer_since = now_ms
            if self._create_response:
                self._auto_deadline = now_ms + AUTO_RESPONSE_GRACE_MS
                return []
            return self._pump()
        if isinstance(event, OutputAudioDone):
            item = self._items.get(event.item_id)
            if item is None or item.audio_done or item.cut:
                return []
            actions = self._flush_tail(item)
            item.audio_done = True
            return actions + self._settle()
        if isinstance(event, OutputAudioTranscriptDone):
            if event.item_id in self._finished:
                return []
            item = self._item(event.item_id, event.response_id)
            item.transcript = event.transcript
            return self._settle()
        if isinstance(event, ResponseCreated):
            return self._on_response_created(event)
        if isinstance(event, ResponseDone):
            return self._on_response_done(event)
        if isinstance(event, OutputItemAdded | OutputItemDone):
            return self._on_output_item(event)
        if isinstance(event, FunctionCallArgumentsDone):
            call = self._calls.get(event.item_id)
            if call is None:
                call = self._track_call(event.item_id, event.call_id, event.response_id)
            call.name = call.name or event.name
            return self._run(call, event.arguments)
        if isinstance(event, SessionUpdated):
            return self._on_session_updated(event.session)
        if isinstance(event, ServerError):
            return self._on_error(event)
        return self._on_caller_side(event)

    def _on_caller_side(self, event: ServerEvent) -> list[Action]:
        if isinstance(event, InputAudioCommitted):
            if self._config.transcription is not None:
                self._transcribing.add(event.item_id)
            return []
        if isinstance(event, InputTranscriptionFailed):
            self._transcribing.discard(event.item_id)
            return []
        if isinstance(event, InputTranscriptionDelta):
            if not event.delta:
                return []
            return [BroadcastPartial("customer", event.item_id, event.delta)]
        if isinstance(event, InputTranscriptionCompleted):
            self._transcribing.discard(event.item_id)
            text = event.transcript.strip()
            if not text:
                return []
            if self._hold is not None:
                self._hold.caller_said(text)
            return [SaveTranscript("customer", text, event.item_id)]
        if isinstance(event, InputAudioTimeoutTriggered) and self._create_response:
            self._auto_deadline = self._now + AUTO_RESPONSE_GRACE_MS
        return []

    # ------------------------------------------------------------ caller side

    def on_twilio_message(self, message: TwilioMessage, *, now_ms: int) -> list[Action]:
        """Handle one parsed Twilio message."""
        if self._ended:
            return []
        self._now = now_ms
        if isinstance(message, Media):
            return self._on_caller_audio(message.payload_b64, now_ms)
        if isinstance(message, Mark):
            return self._on_mark(message.name, None)
        if isinstance(message, Start):
            return self._on_start(message.stream_sid, message.call_sid, now_ms)
        if isinstance(message, Dtmf):
            return [DigitPressed(message.digit)]
        if isinstance(message, Stop):
            return self._end("stop")
        return []  # Connected

    def on_caller_start(
        self, stream_id: str, *, call_ref: str, now_ms: int
    ) -> list[Action]:
        """The caller's stream is up (another transport's ``start``)."""
        if self._ended:
            return []
        self._now = now_ms
        return self._on_start(stream_id, call_ref, now_ms)

    def on_caller_audio(self, payload_b64: str, *, now_ms: int) -> list[Action]:
        """Caller audio in the session's format (another transport's ``media``)."""
        if self._ended:
            return []
        self._now = now_ms
        return self._on_caller_audio(payload_b64, now_ms)

    def on_playback_mark(
        self, name: str, *, now_ms: int, played_at_ms: int | None = None
    ) -> list[Action]:
        """A mark was played to the caller (another transport's mark echo).

        ``played_at_ms`` is when the caller heard it, when the transport knows
        (it may tell a little after the fact); the heard position runs on from
        then at the playback rate.
        """
        if self._ended:
            return []
        self._now = now_ms
        if played_at_ms is not None:
            played_at_ms = min(played_at_ms, now_ms)
        return self._on_mark(name, played_at_ms)

    def on_caller_stop(self, *, now_ms: int) -> list[Action]:
        """The caller hung up (another transport's ``stop``)."""
        if self._ended:
            return []
        self._now = now_ms
        return self._end("stop")

    def _on_start(self, stream_id: str, call_ref: str, now_ms: int) -> list[Action]:
        if self._stream_sid is not None:
            return []
        self._stream_sid = stream_id
        self._call_sid = call_ref
        self._start_ms = now_ms
        if self._cached is not None:
            return self._play_cached(self._cached, stream_id) + self._pump()
        return self._pump()

    def _play_cached(self, cached: CachedGreeting, sid: str) -> list[Action]:
        """Queue the whole cached greeting, a mark after each chunk (F-73)."""
        item = self._item(GREETING_ITEM_ID, "")
        item.received = len(cached.audio)
        item.transcript = cached.text
        item.audio_done = item.final = True  # no response of the model's
        actions: list[Action] = []
        for payload, size in zip(cached.chunks_b64, cached.chunk_sizes, strict=True):
            actions.append(SendAudio(sid, payload))
            self._sent(item, size, self._now)
            actions.append(self._mark(item, sid))
        return actions

    def _on_caller_audio(self, payload_b64: str, now_ms: int) -> list[Action]:
        if not self._confirmed:
            if len(self._backlog) == self._backlog.maxlen:
                self._input_dropped += 1  # the deque drops the oldest frame
            self._backlog.append(payload_b64)
            return []
        deadline = self._auto_deadline
        if deadline is not None and now_ms >= deadline:
            self._auto_deadline = None  # the server's answer never came
            return [AppendAudio(payload_b64), *self._pump()]
        return [AppendAudio(payload_b64)]

    # ------------------------------------------------------------ tools, operator

    def on_tool_result(self, call_id: str, output_json: str) -> list[Action]:
        """Give a tool's output to the model and ask for the follow-up response.

        The response.create waits for the calling response's response.done (and
        for the other tools of that turn). A call_id not awaited is ignored.
        """
        if self._ended or call_id not in self._running:
            return []
        self._running.discard(call_id)
        actions: list[Action] = [AddToolOutput(call_id, output_json)]
        if not self._running:
            self._enqueue("tool")
        return actions + self._pump()

    def instruct(self, text: str) -> list[Action]:
        """Add an operator instruction as a system message and have the AI answer.

        Also serves the idle prompt ("ask whether the caller is still there").
        """
        if self._ended or self._closing:
            return []
        message = AddMessage("system", text)
        actions: list[Action] = []
        if self._confirmed:
            actions.append(message)
        else:
            self._early_context.append(message)
        if self._hold is not None:
            return actions  # paused: context for the hand-back, no answer now
        self._enqueue("instruct")
        return actions + self._pump()

    def say_and_hang_up(self, text: str) -> list[Action]:
        """Have the AI say ``text``, then hang up once that audio has played.

        Other queued requests are dropped; the reply in progress, if any, ends
        first. ``HangUp("goodbye")`` comes when the goodbye's last mark echoes.
        """
        if self._ended or self._closing:
            return []
        self._closing = True
        self._queue.clear()
        self._enqueue(
            "goodbye", instructions=SAY_TEMPLATE.format(text=text), tool_choice="none"
        )
        return self._pump()

    def hangup(self, reason: str = "operator") -> list[Action]:
        """End the call now, saving what the AI already said."""
        if self._ended:
            return []
        return self._end(reason)

    # ------------------------------------------------------------ supervisor (F-75)

    @property
    def paused(self) -> bool:
        """Whether a supervisor holds the call (barge or take-over)."""
        return self._hold is not None

    def pause(self, mode: PauseMode, *, by_name: str = "") -> list[Action]:
        """A supervisor barges in or takes over: the AI stops and stays silent.

        The active response is cancelled, the caller cleared, playing items cut
        at the heard position; the session goes on with turn detection that
        neither answers nor interrupts. Pausing again only changes the mode.
        """
        if self._ended:
            return []
        if self._hold is not None:
            self._hold.mode = mode
            self._hold.by_name = by_name or self._hold.by_name
            return []
        self._hold = Hold(mode, by_name)
        self._queue = deque(r for r in self._queue if r.purpose == "goodbye")
        self._auto_deadline = None
        actions = self._cut_playing(cancel=True, clear=True)
        return [*actions, UpdateSession(self._session_now())]

    def resume(self) -> list[Action]:
        """Hand the call back to the AI: the note, turn detection, a response."""
        hold, self._hold = self._hold, None
        if self._ended or hold is None:
            return []
        note = AddMessage("system", hold.note())
        actions: list[Action] = [UpdateSession(self._config)]
        if self._confirmed:
            actions.append(note)
        else:
            self._early_context.append(note)
        self._enqueue("resume")
        return actions + self._pump()

    def supervisor_said(self, text: str, item_id: str) -> list[Action]:
        """A transcribed line of the supervisor's: saved, and noted for the AI."""
        text = text.strip()
        if self._ended or not text:
            return []
        if self._hold is not None:
            self._hold.supervisor_said(text)
        return [SaveTranscript("agent", text, item_id)]

    def _session_now(self) -> SessionConfig:
        """The session as it should be now: paused while a supervisor holds."""
        if self._hold is None:
            return self._config
        return paused_session(self._config)

    # ------------------------------------------------------------ session

    def _on_session_updated(self, session: Mapping[str, object]) -> list[Action]:
        if not session_format_ok(session, self._audio):
            self._confirmed = False
            return [
                SessionMisconfigured(
                    f"session.updated does not show {self._audio.realtime_type} "
                    "for input and output"
                )
            ]
        flags = session_turn_flags(session)
        self._create_response = flags is not None and flags.create_response
        self._interrupt_response = flags is not None and flags.interrupt_response
        if self._confirmed:
            return []
        self._confirmed = True
        actions: list[Action] = [*self._reseed, *self._early_context]
        self._reseed = []
        self._early_context.clear()
        if self._cached_due:
            # Said already: the model is told, before any caller audio.
            self._cached_due = False
            self._cached_told = self._generation
            if self._cached_text:
                actions.append(
                    AddMessage("assistant", self._cached_text, item_id=GREETING_ITEM_ID)
                )
        actions += [AppendAudio(payload) for payload in self._backlog]
        self._backlog.clear()
        return actions + self._pump()

    def _on_error(self, error: ServerError) -> list[Action]:
        """Recover a response.create the server refused."""
        request = self._inflight
        active = self._active_request
        if active is not None and error.event_id == _event_id(active):
            # A response.created without metadata was taken for this request,
            # but it was the server's own answer and this request was refused.
            self._active_request = None
            if self._goodbye_response == self._active_id:
                self._goodbye_response = None
            self._caller_speaking = False  # it was the answer to the caller
            self._auto_deadline = None
            request = active
        elif request is None:
            return []
        elif error.event_id not in (None, _event_id(request)):
            return []  # about another event
        elif error.event_id is None and error.code != ACTIVE_RESPONSE_CODE:
            return []  # cannot tell whether it concerns the request
        else:
            self._inflight = None
        if error.code == ACTIVE_RESPONSE_CODE:
            # A response we have not seen yet is active; its response.done follows.
            self._queue.appendleft(request)
            self._blocked_until_done = True
        return self._pump()

    # ------------------------------------------------------------ responses

    def _enqueue(
        self,
        purpose: _Purpose,
        *,
        system_text: str | None = None,
        instructions: str | None = None,
        tool_choice: str | None = None,
    ) -> None:
        if self._closing and purpose != "goodbye":
            return
        if purpose == "tool" and any(r.purpose == "tool" for r in self._queue):
            return  # one follow-up answers all tool outputs
        if len(self._queue) >= MAX_PENDING_RESPONSES:
            self._queue.popleft()
        self._requests += 1
        self._queue.append(
            _Request(
                f"req_{self._requests}", purpose, system_text, instructions, tool_choice
            )
        )

    def _pump(self) -> list[Action]:
        """Send the next queued response.create if nothing can collide with it."""
        if (
            not self._queue
            or not self._confirmed
            or self._stream_sid is None
            or self._active_id is not None
            or self._inflight is not None
            or self._caller_speaking
            or self._blocked_until_done
            or self._ended
            or (self._hold is not None and self._queue[0].purpose != "goodbye")
        ):
            return []
        if self._auto_deadline is not None:
            if self._now < self._auto_deadline:
                return []
            self._auto_deadline = None
        request = self._inflight = self._queue.popleft()
        actions: list[Action] = []
        if request.system_text is not None:
            actions.append(AddMessage("system", request.system_text))
        actions.append(
            CreateResponse(
                request.request_id, request.instructions, request.tool_choice
            )
        )
        return actions

    def _on_response_created(self, event: ResponseCreated) -> list[Action]:
        request = self._inflight
        tag = (event.metadata or {}).get(REQUEST_METADATA_KEY)
        # Without metadata (a server that does not echo it, or the server's own
        # answer racing ours) the response is taken as ours; if it was not, the
        # refusal of ours follows and _on_error puts things right.
        if request is not None and tag in (None, request.request_id):
            self._inflight = None
            self._active_request = request
            if request.purpose == "goodbye":
                self._goodbye_response = event.response_id
            elif request.purpose == "greeting" and self._record_greeting:
                self._recorder = GreetingRecorder(event.response_id)
        else:
            self._active_request = None
            self._caller_speaking = False  # the server's answer to the caller
            self._auto_deadline = None
            if self._queue and self._queue[0].purpose == "resume":
                self._queue.popleft()  # it answers after the note: one is enough
        self._active_id = event.response_id
        self._cancel_sent = False
        goodbye = self._goodbye_response == event.response_id
        if self._hold is not None and not goodbye:
            # Begun before the pause took effect: the supervisor has the floor.
            self._muted.add(event.response_id)
            self._cancel_sent = True
            return [CancelResponse(event.response_id)]
        return []

    def _on_response_done(self, event: ResponseDone) -> list[Action]:
        self._responses += 1
        self._blocked_until_done = False
        if event.usage is not None:
            self._usage = self._usage + event.usage
        if event.response_id == self._active_id:
            self._active_id = self._active_request = None
        actions: list[Action] = []
        for item in self._items.values():
            if item.response_id != event.response_id:
                continue
            if not item.audio_done and not item.cut:
                actions += self._flush_tail(item)
                item.audio_done = True
            item.final = True
            self._finalise_transcript(item)
        recorder = self._recorder
        if recorder is not None and recorder.response_id == event.response_id:
            actions += self._greeting_recorded(recorder, event.status)
        for key in [
            k for k, c in self._calls.items() if c.response_id == event.response_id
        ]:
            del self._calls[key]
        if event.response_id == self._goodbye_response:
            self._goodbye_done = True
        return actions + self._settle() + self._pump()

    def _greeting_recorded(
        self, recorder: GreetingRecorder, status: str
    ) -> list[Action]:
        """The live greeting is done: its audio for the cache, when whole."""
        self._recorder = None
        self._record_greeting = False  # one try a call
        item = self._items.get(recorder.item_id or "")
        spoken = recorder.result(
            status=status,
            transcript=None if item is None else item.transcript,
            cut=item is None or item.cut,
        )
        return [] if spoken is None else [spoken]

    def _on_output_item(self, event: OutputItemAdded | OutputItemDone) -> list[Action]:
        item = event.item
        if item.type == "function_call" and item.id is not None:
            call = self._calls.get(item.id)
            if call is None and item.call_id is not None:
                call = self._track_call(item.id, item.call_id, event.response_id)
            if call is None:
                return []
            call.name = call.name or item.name
            if (
                isinstance(event, OutputItemDone)
                and item.status == "completed"
                and item.arguments is not None
            ):
                return self._run(call, item.arguments)
            return []
        if item.type == "message" and item.role == "assistant" and item.id is not None:
            self._item(item.id, event.response_id)
        return []

    def _track_call(self, item_id: str, call_id: str, response_id: str) -> _Call:
        if len(self._calls) >= MAX_TOOL_CALLS:
            del self._calls[next(iter(self._calls))]
        call = self._calls[item_id] = _Call(call_id, None, response_id)
        return call

    def _run(self, call: _Call, arguments: str) -> list[Action]:
        if call.ran or call.name is None or call.response_id in self._muted:
            return []
        call.ran = True
        if len(self._running) < MAX_TOOL_CALLS:
            self._running.add(call.call_id)
        return [RunTool(call.call_id, call.name, arguments)]

    # ------------------------------------------------------------ outbound audio

    def _item(self, item_id: str, response_id: str) -> _AiItem:
        item = self._items.get(item_id)
        if item is None:
            if len(self._items) >= MAX_TRACKED_ITEMS:
                del self._items[next(iter(self._items))]
            item = self._items[item_id] = _AiItem(
                item_id, response_id, self._generation
            )
        return item

    def _on_audio_delta(self, event: OutputAudioDelta, now_ms: int) -> list[Action]:
        if (
            event.response_id in self._muted
            or event.item_id in self._muted
            or event.item_id in self._finished
        ):
            b64 = event.delta_b64
            self._stale_bytes += len(b64) * 3 // 4 - b64[-2:].count("=")
            return []
        try:
            data = binascii.a2b_base64(event.delta_b64, strict_mode=True)
        except binascii.Error as exc:
            raise RealtimeProtocolError(f"audio delta is not base64: {exc}") from None
        if self._answer_since is not None:
            self._latencies.append(now_ms - self._answer_since)
            self._answer_since = None
        item = self._item(event.item_id, event.response_id)
        sid = self._stream_sid
        if sid is None or item.audio_done or item.cut:
            self._stale_bytes += len(data)
            return []
        size = len(data)
        item.received += size
        self._bytes_in += size
        if self._recorder is not None:  # the live greeting, to fill the cache
            self._recorder.add(event.response_id, event.item_id, data)
        buffer = item.buffer
        actions: list[Action]
        unit = self._unit
        if not buffer and size % unit == 0 and 0 < size <= self._frame:
            # Whole 20 ms with nothing held back: one frame, the model's own base64.
            actions = [SendAudio(sid, event.delta_b64)]
            whole = size
        else:
            buffer += data
            # Every whole 20 ms goes out now (holding audio for a fuller frame would
            # add up to a frame of latency); frames are at most `frame_bytes`.
            whole = len(buffer) - len(buffer) % unit
            if not whole:
                return []
            frame = self._frame
            b2a = binascii.b2a_base64
            actions = [
                SendAudio(
                    sid,
                    b2a(buffer[at : min(at + frame, whole)], newline=False).decode(
                        "ascii"
                    ),
                )
                for at in range(0, whole, frame)
            ]
            del buffer[:whole]
        self._sent(item, whole, now_ms)
        # The first mark of an item tells when its playback began.
        if not item.marked or item.sent - item.marked >= self._mark_spacing:
            actions.append(self._mark(item, sid))
        return actions

    def _flush_tail(self, item: _AiItem) -> list[Action]:
        """Send what is left of an item's audio, then a mark at its end."""
        sid = self._stream_sid
        if sid is None:
            return []
        actions: list[Action] = []
        if item.buffer:
            tail = binascii.b2a_base64(item.buffer, newline=False).decode("ascii")
            actions.append(SendAudio(sid, tail))
            self._sent(item, len(item.buffer), self._now)
            item.buffer.clear()
        if item.sent > item.marked:
            actions.append(self._mark(item, sid))
        return actions

    def _sent(self, item: _AiItem, count: int, now_ms: int) -> None:
        item.sent += count
        self._bytes_out += count
        if self._first_audio_ms is None and self._start_ms is not None:
            self._first_audio_ms = now_ms - self._start_ms

    def _mark(self, item: _AiItem, sid: str) -> SendMark:
        self._mark_counter += 1
        self._marks.append((self._mark_counter, item.item_id, item.sent))
        item.marked = item.sent
        return SendMark(sid, f"{MARK_PREFIX}{self._mark_counter}")

    def _on_mark(self, name: str, played_at_ms: int | None) -> list[Action]:
        digits = name[len(MARK_PREFIX) :]
        marks = self._marks
        if (
            not (name.startswith(MARK_PREFIX) and digits.isascii() and digits.isdigit())
            or not marks
        ):
            return []
        counter = int(digits)
        # After a clear, the deque is empty and the discarded marks that Twilio
        # returns fall below its first counter: they prove nothing was heard.
        if not marks[0][0] <= counter <= marks[-1][0]:
            return []
        item_id = ""
        while marks and marks[0][0] <= counter:
            _, item_id, position = marks.popleft()
            item = self._items.get(item_id)
            if item is not None and position > item.heard:
                item.heard = position
                item.heard_at_ms = self._now if played_at_ms is None else played_at_ms
        # Playback is in order: every earlier item has been heard to its end.
        for key, item in self._items.items():
            if key == item_id:
                break
            if item.audio_done:
                item.heard = item.sent
        return self._settle()

    # ------------------------------------------------------------ barge-in

    def _heard_now(self, item: _AiItem) -> int:
        """Bytes of ``item`` played by now: the last echoed mark's position plus the
        time since its echo at the playback rate, short of the item's first mark
        still pending (the audio before it has not all played) and of what was sent.
        """
        if item.heard_at_ms is None:
            return item.heard
        estimate = item.heard + (self._now - item.heard_at_ms) * self._bytes_per_ms
        pending = next(
            (
                position
                for _, item_id, position in self._marks
                if item_id == item.item_id
            ),
            item.sent,
        )
        return max(item.heard, min(estimate, pending, item.sent))

    def _on_speech_started(self) -> list[Action]:
        self._caller_speaking = True
        self._auto_deadline = self._answer_since = None
        if self._hold is not None:
            return []  # the AI is silent; a clear would cut the supervisor's audio
        return self._cut_playing(cancel=not self._interrupt_response)

    def _cut_playing(self, *, cancel: bool, clear: bool = False) -> list[Action]:
        """Stop the AI where the caller is: clear, truncate at the heard position,
        mute the active response (cancelled here when ``cancel``)."""
        actions: list[Action] = []
        playing = [item for item in self._items.values() if not item.settled]
        heard = {item.item_id: self._heard_now(item) for item in playing}
        if self._stream_sid is not None and (
            clear or any(i.sent > i.heard for i in playing)
        ):
            actions.append(ClearCaller(self._stream_sid))
            self._marks.clear()  # the transport returns them all at once
        for item in playing:
            if item.item_id == GREETING_ITEM_ID and self._cached is not None:
                actions += self._cut_cached(item, heard[item.item_id])
            elif item.received and item.generation == self._generation:
                cut = min(heard[item.item_id], item.received)  # never past what we got
                actions.append(Truncate(item.item_id, cut // self._bytes_per_ms))
            self._stale_bytes += len(item.buffer)
            item.buffer.clear()
            item.cut = True
            self._muted.add(item.item_id)
            self._muted.add(item.response_id)
        active = self._active_id
        if active is not None and not self._cancel_sent:
            self._muted.add(active)  # the server cancels it, or we do
            if cancel:
                actions.append(CancelResponse(active))
                self._cancel_sent = True
        if playing or active is not None:
            self._barge_ins += 1
        return actions + self._settle()

    def _cut_cached(self, item: _AiItem, heard: int) -> list[Action]:
        """A barge-in into the cached greeting: keep only what was heard.

        Its item has text and no audio, which truncate cannot cut (PROTOCOL
        A6): the heard part goes in right after it, then it is deleted.
        """
        text = heard_text(self._cached_text, heard, item.received)
        item.transcript = self._cached_text = text
        if self._cached_told != self._generation:
            return []  # not in this session yet: the cut text goes in when due
        actions: list[Action] = []
        if text:
            actions.append(
                AddMessage(
                    "assistant",
                    text,
                    item_id=CUT_ITEM_ID,
                    previous_item_id=GREETING_ITEM_ID,
                )
            )
        actions.append(DeleteItem(GREETING_ITEM_ID))
        return actions

    # ------------------------------------------------------------ transcripts, end

    def _add_part(self, item: _AiItem, delta: str) -> None:
        if item.parts_chars + len(delta) <= MAX_TRANSCRIPT_CHARS:
            item.parts.append(delta)
            item.parts_chars += len(delta)

    def _finalise_transcript(self, item: _AiItem) -> None:
        if item.transcript is None:
            item.transcript = "".join(item.parts)

    def _settle(self) -> list[Action]:
        """Save the AI lines whose audio has played; hang up after a goodbye."""
        actions: list[Action] = []
        done: list[str] = []
        for key, item in self._items.items():
            if not item.settled:
                continue
            if not item.saved and item.transcript is not None:
                item.saved = True
                if item.transcript.strip():
                    actions.append(
                        SaveTranscript("ai", item.transcript, key, interrupted=item.cut)
                    )
            if item.saved and item.final:
                done.append(key)
        for key in done:
            del self._items[key]
            self._finished.add(key)
        if self._goodbye_done and not any(
            i.response_id == self._goodbye_response for i in self._items.values()
        ):
            actions += self._end("goodbye")
        return actions

    def _end(self, reason: str) -> list[Action]:
        actions: list[Action] = []
        for key, item in self._items.items():
            self._finalise_transcript(item)
            if not item.saved and item.transcript and item.transcript.strip():
                interrupted = item.cut or not item.settled
                actions.append(
                    SaveTranscript("ai", item.transcript, key, interrupted=interrupted)
                )
            item.saved = True
        self._ended = True
        actions.append(HangUp(reason))
        return actions
