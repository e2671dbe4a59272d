"""Declarative scenarios the fake OpenAI Realtime server plays.

A scenario decides *what* the fake model says; the server
(``realtime_session.FakeSession``) decides *how*, following the protocol: VAD
events, commits, conversation items, response streaming, cancellation and the
error rules. Scenarios are frozen and shared by every connection of a server;
per-connection state (turn and response counters) reaches them through
``ResponseRequest``. Configure one per instance, e.g.
``dataclasses.replace(TOOL_CALL, tool_name="transfer_to_human")`` or
``ToolCall(tool_name="transfer_to_human", arguments='{"reason":"x"}')``.

Audio is 8 kHz μ-law here; the server converts it to the session's output
format. When a ``Speech`` carries no audio, the server plays
``audio.tone_for_text(text)``: a tone pattern as long as the text, not speech.

Every scenario runs the same spoken-turn machinery (see the server docstring
for the exact event order). They differ in:

- ``GREET_THEN_ANSWER``: greeting on ``response.create``, a rotating English
  reply per caller turn.
- ``ECHO``: each caller utterance is answered with the audio it contained
  (per utterance, after VAD's ``speech_stopped``).
- ``ECHO_FRAMES``: no VAD; each appended chunk comes straight back as one
  ``response.output_audio.delta`` of a single long-lived response (opened by
  ``response.create`` or by the first append). For the latency benchmark.
- ``TOOL_CALL``: the first caller turn gets "one moment" plus a
  ``function_call``; after ``function_call_output`` and ``response.create``,
  an audio answer.
- ``BARGE_IN``: long answers (8 s), so caller speech interrupts them; two
  stale audio deltas follow ``speech_started`` before the cancel; expects the
  client to truncate the interrupted item.
- ``ERRORS``: a ``server_error`` after the first ``session.update``, and the
  second response (index 1: the first caller turn's answer when the client
  greets first) ends ``failed`` with ``status_details.error``.
- ``MID_CALL_DROP``: the first connection is aborted (no close frame) after 50
  client events; later connections behave normally (for reconnect tests).
- ``SESSION_EXPIRED``: the first connection gets ``session_expired`` after 1 s,
  then a close.
- ``DEMO``: a scripted Japanese agent (tone audio, Japanese text). Its
  ``personas`` play the callees of the demo campaign: a persona whose
  ``marker`` (the callee's name) is in the session instructions says its own
  lines and gets its own tool calls (an appointment, an outcome, an opt-out).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from realtime.emulators.audio import tone

__all__ = [
    "BARGE_IN",
    "DEMO",
    "ECHO",
    "ECHO_FRAMES",
    "ERRORS",
    "GREET_THEN_ANSWER",
    "MID_CALL_DROP",
    "SCENARIOS",
    "SESSION_EXPIRED",
    "TOOL_CALL",
    "BargeIn",
    "Echo",
    "EchoFrames",
    "Failure",
    "FunctionCall",
    "Persona",
    "ResponsePlan",
    "ResponseRequest",
    "Scenario",
    "Scheduled",
    "Speech",
    "ToolCall",
    "by_name",
]


@dataclass(frozen=True, slots=True)
class Speech:
    """An assistant message: its transcript and its μ-law audio.

    ``audio=None`` plays a tone pattern as long as the text.
    """

    text: str
    audio: bytes | None = None


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A ``function_call`` output item; ``arguments`` is a JSON string."""

    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class Failure:
    """How a response fails: ``response.done`` status ``failed`` with this error."""

    type: str = "server_error"
    code: str | None = "server_error"
    message: str = "The server had an error while processing your request."


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """The output items of one response, in order, and an optional failure."""

    outputs: tuple[Speech | FunctionCall, ...] = ()
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """What the server knows when a response starts."""

    trigger: Literal["turn", "client"]
    """``turn``: server VAD with ``create_response``; ``client``: response.create."""
    response_index: int
    """Responses already started on this connection (0 for the first)."""
    turn_index: int
    """Caller turns committed so far on this connection."""
    instructions: str | None
    """``response.instructions`` of the response.create, if it set them."""
    session_instructions: str
    caller_audio: bytes = b""
    """μ-law of the latest committed caller turn."""
    caller_transcript: str = ""
    tool_outputs: tuple[str, ...] = ()
    """call_ids of ``function_call_output`` items added since the last response."""
    session_tools: frozenset[str] = frozenset()
    """Names of the function tools the session offers when the response starts."""


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A raw server event to inject (``event_id`` is added when missing).

    Sent ``at_ms`` after ``session.created``, or right after the first client
    event of type ``after`` has been handled.
    """

    event: Mapping[str, Any]
    at_ms: float | None = None
    after: str | None = None


_QUOTED = re.compile(r"「([^」]+)」|\"([^\"]+)\"")


def _quoted(instructions: str) -> str | None:
    """Return the first 「…」 or "…" segment of ``instructions``, if any."""
    match = _QUOTED.search(instructions)
    return (match.group(1) or match.group(2)) if match else None


@dataclass(frozen=True, slots=True)
class Persona:
    """A callee played when ``marker`` appears in the session instructions.

    ``caller_transcripts`` replace the scenario's; ``tool_calls`` maps a caller
    turn (1-based) to the function call the model makes after it, whose
    ``arguments`` may hold ``{date+N}`` (today plus N days, ISO); ``tool_answer``
    is said once the output is in. As the real model, a persona calls only a tool
    the session offers at that moment; else it answers as the scenario would.
    """

    marker: str
    caller_transcripts: tuple[str, ...]
    tool_calls: Mapping[int, FunctionCall] = field(default_factory=dict)
    tool_answer: str | None = None


_DATE_OFFSET = re.compile(r"\{date\+(\d+)\}")


def _dated(arguments: str) -> str:
    """Fill ``{date+N}`` with today + N days (so a booking is never in the past)."""
    today = dt.date.today()
    return _DATE_OFFSET.sub(
        lambda m: (today + dt.timedelta(days=int(m.group(1)))).isoformat(), arguments
    )


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """The spoken-turn scenario; every other scenario adjusts it."""

    name: str = "greet_then_answer"
    greeting: str = "Hello, thank you for calling. How can I help you today?"
    replies: tuple[str, ...] = (
        "Sure, I can help with that.",
        "Thank you. Is there anything else?",
        "I see. Let me note that down.",
    )
    tool_answer: str = "I have checked that for you. Everything is in order."
    caller_transcripts: tuple[str, ...] = (
        "Hello, I would like to check my order.",
        "Thank you, that is all.",
    )
    supervisor_transcripts: tuple[str, ...] = (
        "This is the supervisor. I will check your order myself.",
        "I will hand you back to our assistant now.",
    )
    """What a transcription session (a supervisor's microphone, F-75) hears,
    turn by turn, cycled."""
    speak_instructions: bool = False
    """Say ``response.instructions`` (their 「…」 or "…" part if any) when a
    response.create sets them, and greet with the quoted part of the session
    instructions when they have one."""
    reply_ms: int | None = None
    """Fixed answer length (a tone); None sizes the audio to the text."""

    # VAD and pacing
    silence_ms: int | None = None
    """Silence that ends a turn; None uses the session's silence_duration_ms."""
    audio_speed: float = 4.0
    """Output audio pace as a multiple of real time (inf: no waiting)."""
    chunk_bytes: tuple[int, ...] = (397, 1203, 811, 1601, 253, 2399)
    """Odd delta sizes in μ-law bytes, cycled (× 6 for 24 kHz PCM)."""
    transcription_delay_s: float = 0.02
    """Delay of the asynchronous caller transcription events."""
    late_deltas: int = 0
    """Audio deltas still sent after speech_started, before a turn_detected
    cancel: audio in flight, which the client must drop, never play."""

    # Faults
    fail_responses: frozenset[int] = frozenset()
    """Indexes of responses that end ``failed`` (with ``failure``)."""
    failure: Failure = field(default_factory=Failure)
    schedule: tuple[Scheduled, ...] = ()
    personas: tuple[Persona, ...] = ()
    """Callees picked by a marker in the session instructions (see Persona)."""
    fault_connections: tuple[int, ...] | None = (0,)
    """Connections (0-based) hit by the drop/expiry faults below; None: all."""
    drop_after_client_events: int | None = None
    drop_after_server_events: int | None = None
    drop_after_ms: float | None = None
    expire_after_ms: float | None = None
    expire_close_code: int = 1000
    handshake_delay_s: float = 0.0
    """Added to the server's own handshake delay."""

    # What assert_complete() demands of the client
    expect_session_update: bool = True
    expect_audio_format: str | None = "audio/pcmu"
    """Format the client must select both ways before audio flows; None: any."""
    expect_truncate_on_barge_in: bool = False
    frame_echo: bool = False
    """ECHO_FRAMES mode (see the module docstring)."""
    open_on_append: bool = True
    """In frame-echo mode, let the first append open the echo response."""

    def faults_apply(self, connection_index: int) -> bool:
        """Tell whether the fault knobs apply to this connection."""
        return (
            self.fault_connections is None or connection_index in self.fault_connections
        )

    def persona(self, session_instructions: str) -> Persona | None:
        """Return the first persona whose marker the instructions contain."""
        for persona in self.personas:
            if persona.marker and persona.marker in session_instructions:
                return persona
        return None

    def caller_transcript(self, turn_index: int, session_instructions: str = "") -> str:
        """Return the transcription of caller turn ``turn_index`` (1-based)."""
        persona = self.persona(session_instructions)
        lines = persona.caller_transcripts if persona else self.caller_transcripts
        if not lines:
            return ""
        return lines[(turn_index - 1) % len(lines)]

    def supervisor_transcript(self, turn_index: int) -> str:
        """Return the transcription of a transcription session's turn (1-based)."""
        lines = self.supervisor_transcripts
        if not lines:
            return ""
        return lines[(turn_index - 1) % len(lines)]

    def speech(self, text: str) -> Speech:
        """Return a Speech of ``text``, sized by ``reply_ms`` when set."""
        if self.reply_ms is None:
            return Speech(text)
        return Speech(text, tone(self.reply_ms, 392.0, 7000))

    def respond(self, request: ResponseRequest) -> ResponsePlan:
        """Plan the response to ``request``."""
        persona = self.persona(request.session_instructions)
        if persona is not None:
            if request.tool_outputs and persona.tool_answer:
                return ResponsePlan((self.speech(persona.tool_answer),))
            call = persona.tool_calls.get(request.turn_index)
            if (
                request.trigger == "turn"
                and call is not None
                and call.name in request.session_tools
            ):
                return ResponsePlan((FunctionCall(call.name, _dated(call.arguments)),))
        if request.instructions and self.speak_instructions:
            said = _quoted(request.instructions) or request.instructions
            return ResponsePlan((self.speech(said),))
        if request.tool_outputs:
            return ResponsePlan((self.speech(self.tool_answer),))
        if request.trigger == "client" and request.turn_index == 0:
            quoted = None
            if self.speak_instructions:
                quoted = _quoted(request.session_instructions)
            return ResponsePlan((self.speech(quoted or self.greeting),))
        reply = self.replies[max(0, request.turn_index - 1) % len(self.replies)]
        return ResponsePlan((self.speech(reply),))


@dataclass(frozen=True, kw_only=True)
class Echo(Scenario):
    """Answer each caller utterance with the audio it contained."""

    name: str = "echo"
    greeting: str = "Echo test."

    def respond(self, request: ResponseRequest) -> ResponsePlan:
        """Echo the last caller turn; greet when asked before any turn."""
        if request.trigger == "turn" and request.caller_audio:
            return ResponsePlan(
                (Speech(request.caller_transcript, request.caller_audio),)
            )
        return ResponsePlan((Speech(self.greeting),))


@dataclass(frozen=True, kw_only=True)
class EchoFrames(Echo):
    """Return every appended chunk at once as an output_audio.delta."""

    name: str = "echo_frames"
    frame_echo: bool = True
    audio_speed: float = float("inf")


@dataclass(frozen=True, kw_only=True)
class ToolCall(Scenario):
    """Call a tool on caller turn ``call_on_turn``, then answer with its result."""

    name: str = "tool_call"
    tool_name: str = "lookup_order"
    arguments: str = '{"order_id": "1234"}'
    preamble: str | None = "One moment, let me check."
    """Audio said before the call, in the same response (None: call only)."""
    call_on_turn: int = 1

    def respond(self, request: ResponseRequest) -> ResponsePlan:
        """Call the tool on the chosen turn; otherwise behave like the base."""
        if request.trigger == "turn" and request.turn_index == self.call_on_turn:
            call = FunctionCall(self.tool_name, self.arguments)
            if self.preamble is None:
                return ResponsePlan((call,))
            return ResponsePlan((self.speech(self.preamble), call))
        return super().respond(request)


@dataclass(frozen=True, kw_only=True)
class BargeIn(Scenario):
    """Long answers, so that caller speech interrupts them."""

    name: str = "barge_in"
    reply_ms: int | None = 8000
    audio_speed: float = 2.0
    late_deltas: int = 2
    expect_truncate_on_barge_in: bool = True


GREET_THEN_ANSWER = Scenario()
ECHO = Echo()
ECHO_FRAMES = EchoFrames()
TOOL_CALL = ToolCall()
BARGE_IN = BargeIn()
ERRORS = Scenario(
    name="errors",
    schedule=(
        Scheduled(
            {
                "type": "error",
                "error": {
                    "type": "server_error",
                    "code": None,
                    "message": "The server had an error while processing your "
                    "request. Sorry about that!",
                    "param": None,
                    "event_id": None,
                },
            },
            after="session.update",
        ),
    ),
    fail_responses=frozenset({1}),
)
MID_CALL_DROP = Scenario(name="mid_call_drop", drop_after_client_events=50)
SESSION_EXPIRED = Scenario(name="session_expired", expire_after_ms=1000.0)
DEMO = Scenario(
    name="demo",
    greeting="お電話ありがとうございます。ご用件をお話しください。",
    replies=(
        "かしこまりました。確認いたしますので、少々お待ちください。",
        "ありがとうございます。ほかにご用件はございますか。",
        "承知いたしました。担当者に申し伝えます。",
    ),
    tool_answer="確認が取れました。ご予約は承っております。",
    caller_transcripts=(
        "もしもし、予約について聞きたいのですが。",
        "はい、お願いします。",
        "いいえ、以上です。",
    ),
    speak_instructions=True,
    personas=(
        Persona(
            # The demo receptionist with the 予約システム MCP server (issue 18).
            marker="予約システムの lookup_booking",
            caller_transcripts=(
                "もしもし、予約について聞きたいのですが。電話番号は090-1234-5678です。",
                "はい、お願いします。",
                "いいえ、以上です。",
            ),
            tool_calls={
                1: FunctionCall("lookup_booking", '{"phone_number": "09012345678"}')
            },
            tool_answer="予約システムで確認が取れました。ご予約は承っております。",
        ),
        Persona(
            marker="山田 太郎",
            caller_transcripts=(
                "はい、来週の火曜日の午前10時にお願いします。",
                "ありがとうございます。",
            ),
            tool_calls={
                1: FunctionCall(
                    "schedule_appointment",
                    '{"date": "{date+7}", "time": "10:00", "name": "山田 太郎"}',
                ),
                2: FunctionCall(
                    "save_call_outcome",
                    '{"outcome": "予約成立", "notes": "来週火曜10時に来店予約"}',
                ),
            },
            tool_answer="ありがとうございます。ご予約を承りました。",
        ),
        Persona(
            marker="佐藤 花子",
            caller_transcripts=("資料を送ってもらえますか。", "よろしくお願いします。"),
            tool_calls={
                1: FunctionCall(
                    "save_call_outcome",
                    '{"outcome": "資料送付", "notes": "メールで資料送付を希望"}',
                )
            },
            tool_answer="承知いたしました。資料をお送りいたします。",
        ),
        Persona(
            marker="田中 次郎",
            caller_transcripts=("結構です。もう電話しないでください。",),
            tool_calls={
                1: FunctionCall(
                    "record_opt_out",
                    '{"customer_words": "結構です。もう電話しないでください。"}',
                )
            },
            tool_answer="承知いたしました。今後お電話はいたしません。失礼いたします。",
        ),
        Persona(
            marker="鈴木 一郎",
            caller_transcripts=("今は少し忙しいので、また今度にしてください。",),
            tool_calls={
                1: FunctionCall(
                    "save_call_outcome",
                    '{"outcome": "再架電希望", "notes": "忙しいので後日"}',
                )
            },
            tool_answer="承知いたしました。また改めてご連絡いたします。",
        ),
    ),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        GREET_THEN_ANSWER,
        ECHO,
        ECHO_FRAMES,
        TOOL_CALL,
        BARGE_IN,
        ERRORS,
        MID_CALL_DROP,
        SESSION_EXPIRED,
        DEMO,
    )
}
"""Scenarios by name, as the standalone server's ``--scenario`` accepts them."""


def by_name(name: str) -> Scenario:
    """Return the scenario called ``name`` (``-`` and ``_`` are equivalent)."""
    try:
        return SCENARIOS[name.replace("-", "_").lower()]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise ValueError(f"unknown scenario {name!r}; known: {known}") from None
