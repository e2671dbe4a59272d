"""The bridge state machine: events in, actions out, no event loop, no database."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from realtime.protocol.bridge_state import (
    MAX_BUFFERED_INPUT_FRAMES,
    OUTBOUND_FRAME_BYTES,
    SAY_TEMPLATE,
    AddMessage,
    AddToolOutput,
    AppendAudio,
    BridgeState,
    BroadcastPartial,
    CancelResponse,
    ClearCaller,
    CreateResponse,
    DigitPressed,
    HangUp,
    ItemAudio,
    ModelCommand,
    RunTool,
    SaveTranscript,
    SendAudio,
    SendMark,
    SessionMisconfigured,
    Truncate,
    TwilioCommand,
    UpdateSession,
    reseed_messages,
)
from realtime.protocol.errors import RealtimeProtocolError
from realtime.protocol.openai_events import (
    FunctionCallArgumentsDone,
    InputAudioTimeoutTriggered,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    Item,
    OutputAudioDelta,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerVad,
    SessionConfig,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Usage,
)
from realtime.protocol.twilio_media import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    Start,
    Stop,
)
from tests.realtime.protocol.test_openai_events import validate_client

SID = "MZ1"
FRAME = OUTBOUND_FRAME_BYTES
START = Start(
    stream_sid=SID,
    account_sid="AC1",
    call_sid="CA1",
    tracks=("inbound",),
    media_format=MediaFormat("audio/x-mulaw", 8000, 1),
    sequence=1,
)


def config(*, interrupt: bool = True, create: bool = True) -> SessionConfig:
    vad = ServerVad(create_response=create, interrupt_response=interrupt)
    return SessionConfig(instructions="Be kind.", turn_detection=vad)


def updated(*, interrupt: bool = True, create: bool = True, pcmu: bool = True):
    fmt = {"type": "audio/pcmu"} if pcmu else {"type": "audio/pcm", "rate": 24000}
    return SessionUpdated(
        {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": fmt,
                    "turn_detection": {
                        "type": "server_vad",
                        "create_response": create,
                        "interrupt_response": interrupt,
                    },
                },
                "output": {"format": fmt, "voice": "marin"},
            },
        }
    )


def ready(
    *, greeting: str | None = None, interrupt: bool = True, create: bool = True
) -> BridgeState:
    """A call whose session is confirmed and whose stream has started at t=0."""
    state = BridgeState(
        session=config(interrupt=interrupt, create=create), greeting=greeting
    )
    state.on_model_connected()
    state.on_server_event(updated(interrupt=interrupt, create=create), now_ms=0)
    state.on_twilio_message(START, now_ms=0)
    return state


def ulaw(count: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(count)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def media(index: int) -> Media:
    return Media(SID, b64(bytes([index % 256]) * 160), index * 20, index, index + 1)


def model(state: BridgeState, event: Any, now: int = 0) -> list[Any]:
    return state.on_server_event(event, now_ms=now)


def twilio(state: BridgeState, message: Any, now: int = 0) -> list[Any]:
    return state.on_twilio_message(message, now_ms=now)


def created(state: BridgeState, rid: str, request: str | None = None) -> list[Any]:
    metadata = {"bridge_request": request} if request else None
    return model(state, ResponseCreated(rid, metadata=metadata))


def audio(state: BridgeState, rid: str, iid: str, size: int, now: int = 0):
    return model(state, OutputAudioDelta(rid, iid, b64(ulaw(size, size))), now)


def done(state: BridgeState, rid: str, usage: Usage | None = None) -> list[Any]:
    return model(state, ResponseDone(rid, "completed", usage=usage))


def of(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def mark_names(actions: list[Any]) -> list[str]:
    return [a.name for a in of(actions, SendMark)]


def echo(state: BridgeState, *names: str) -> list[Any]:
    actions: list[Any] = []
    for number, name in enumerate(names):
        actions += twilio(state, Mark(SID, name, 100 + number))
    return actions


def frame_sizes(actions: list[Any]) -> list[int]:
    return [len(base64.b64decode(a.payload_b64)) for a in of(actions, SendAudio)]


# ------------------------------------------------------------------ greeting


def test_greeting_waits_for_session_updated_then_start():
    """With the session confirmed first, the greeting starts when start arrives."""
    state = BridgeState(session=config(), greeting="Greet the caller warmly.")
    assert state.on_model_connected() == [UpdateSession(config())]
    assert model(state, updated()) == []
    assert twilio(state, START) == [
        AddMessage("system", "Greet the caller warmly."),
        CreateResponse("req_1"),
    ]


def test_greeting_waits_for_start_then_session_updated():
    """With start first, the greeting starts when session.updated confirms pcmu."""
    state = BridgeState(session=config(), greeting="Greet.")
    assert twilio(state, Connected("Call", "1.0.0")) == []
    assert twilio(state, START) == []
    assert model(state, updated()) == [
        AddMessage("system", "Greet."),
        CreateResponse("req_1"),
    ]


def test_no_greeting_when_the_caller_speaks_first():
    """Without a greeting text, nothing is asked of the model at start."""
    state = BridgeState(session=config())
    assert model(state, updated()) == []
    assert twilio(state, START) == []


def test_misconfigured_session_blocks_the_greeting():
    """A session.updated without pcmu both ways is reported; nothing is sent."""
    state = BridgeState(session=config(), greeting="Greet.")
    twilio(state, START)
    actions = model(state, updated(pcmu=False))
    assert len(actions) == 1
    assert isinstance(actions[0], SessionMisconfigured)
    assert not state.session_confirmed
    assert twilio(state, media(1)) == []  # still buffered, not sent as PCM


# ------------------------------------------------------------------ caller audio


def test_caller_audio_is_forwarded_once_the_session_is_confirmed():
    """Each Twilio frame becomes one input_audio_buffer.append, payload untouched."""
    state = ready()
    frame = media(3)
    assert twilio(state, frame) == [AppendAudio(frame.payload_b64)]


def test_audio_before_the_session_is_buffered_and_flushed_in_order():
    """Frames arriving before session.updated are sent in order right after it."""
    state = BridgeState(session=config())
    twilio(state, START)
    frames = [media(i) for i in range(5)]
    for frame in frames:
        assert twilio(state, frame) == []
    assert model(state, updated()) == [AppendAudio(f.payload_b64) for f in frames]
    assert twilio(state, media(9)) == [AppendAudio(media(9).payload_b64)]


def test_early_audio_buffer_is_bounded_and_drops_the_oldest():
    """Past 5 s of early audio the oldest frames go, and the loss is counted."""
    state = BridgeState(session=config())
    extra = 10
    for i in range(MAX_BUFFERED_INPUT_FRAMES + extra):
        twilio(state, media(i))
    flushed = model(state, updated())
    assert len(flushed) == MAX_BUFFERED_INPUT_FRAMES
    assert flushed[0] == AppendAudio(media(extra).payload_b64)
    assert flushed[-1] == AppendAudio(media(MAX_BUFFERED_INPUT_FRAMES + 9).payload_b64)
    assert state.figures().input_frames_dropped == extra


def test_dtmf_is_reported():
    """A key press becomes DigitPressed."""
    assert twilio(ready(), Dtmf(SID, "5", 3)) == [DigitPressed("5")]


# ------------------------------------------------------------------ outbound audio


def test_rechunking_sends_steady_frames_and_flushes_the_tail():
    """Deltas of any size go out as whole 20 ms frames; the tail goes on audio done.

    Every frame but the tail is a multiple of 160 (20 ms) of at most
    OUTBOUND_FRAME_BYTES; no whole 20 ms is held back; the bytes sent are exactly
    the bytes received, in order.
    """
    state = ready()
    created(state, "resp_1")
    chunks = [ulaw(size, seed) for seed, size in enumerate([1, 333, 7, 1000, 159, 481])]
    actions: list[Any] = []
    for chunk in chunks:
        actions += model(state, OutputAudioDelta("resp_1", "item_1", b64(chunk)))
    sizes = frame_sizes(actions)
    assert FRAME % 160 == 0
    assert all(size % 160 == 0 and 0 < size <= FRAME for size in sizes)
    tail_actions = model(state, OutputAudioDone("resp_1", "item_1"))
    total = sum(len(c) for c in chunks)
    assert sum(sizes) == total - total % 160  # nothing of a whole 20 ms held
    assert frame_sizes(tail_actions) == [total % 160]
    assert isinstance(tail_actions[-1], SendMark)
    sent = b"".join(
        base64.b64decode(a.payload_b64) for a in of(actions + tail_actions, SendAudio)
    )
    assert sent == b"".join(chunks)
    assert state.figures().audio_bytes_to_caller == total
    assert state.figures().audio_bytes_from_model == total


def test_a_whole_20_ms_is_never_held_for_a_fuller_frame():
    """A 20 ms delta goes out at once, not after the next one fills 40 ms."""
    state = ready()
    created(state, "resp_1")
    assert frame_sizes(audio(state, "resp_1", "item_1", 160)) == [160]
    assert frame_sizes(audio(state, "resp_1", "item_1", 480)) == [320, 160]


def test_whole_frames_with_nothing_held_go_out_in_the_models_own_base64():
    """An aligned delta is not re-encoded; one after a held tail is re-chunked."""
    state = ready()
    created(state, "resp_1")
    aligned = b64(ulaw(FRAME, 1))
    sent = of(model(state, OutputAudioDelta("resp_1", "item_1", aligned)), SendAudio)
    assert [a.payload_b64 for a in sent] == [aligned]
    assert sent[0].payload_b64 is aligned
    model(state, OutputAudioDelta("resp_1", "item_1", b64(ulaw(100, 2))))  # held
    after = ulaw(160, 3)
    sent = of(model(state, OutputAudioDelta("resp_1", "item_1", b64(after))), SendAudio)
    assert frame_sizes(sent) == [160]
    assert base64.b64decode(sent[0].payload_b64) == ulaw(100, 2) + after[:60]
    assert state.figures().audio_bytes_to_caller == FRAME + 160


def test_frames_of_160_bytes_can_be_chosen():
    """frame_bytes=160 sends 20 ms frames; sizes not a multiple of 160 are refused."""
    state = BridgeState(session=config(), frame_bytes=160)
    model(state, updated())
    twilio(state, START)
    assert frame_sizes(audio(state, "r", "i", 500)) == [160, 160, 160]
    with pytest.raises(ValueError):
        BridgeState(session=config(), frame_bytes=100)


def test_a_mark_follows_each_batch_with_a_counter_name():
    """Each batch of frames (≥ 100 ms) is followed by a mark named by a counter."""
    state = ready()
    first = audio(state, "resp_1", "item_1", 3200)
    second = audio(state, "resp_1", "item_1", 1600)
    assert isinstance(first[-1], SendMark)
    assert mark_names(first) == ["a1"]
    assert mark_names(second) == ["a2"]
    assert all(a.stream_sid == SID for a in of(first + second, SendAudio))


def test_small_batches_share_a_mark():
    """An item's first batch is marked (playback began), then one mark per 200 ms
    of audio at most; audio done marks the end."""
    state = ready()
    assert mark_names(audio(state, "r", "i", 320)) == ["a1"]
    for _ in range(4):
        assert mark_names(audio(state, "r", "i", 320)) == []
    assert mark_names(audio(state, "r", "i", 320)) == ["a2"]  # 200 ms since a1
    assert mark_names(model(state, OutputAudioDone("r", "i"))) == []  # nothing new
    tail = audio(ready(), "r", "i", 10)
    assert tail == []


def test_undecodable_audio_raises_without_changing_state():
    """An audio delta that is not base64 is a protocol error."""
    state = ready()
    with pytest.raises(RealtimeProtocolError):
        model(state, OutputAudioDelta("r", "i", "***"))
    assert frame_sizes(audio(state, "r", "i", 320)) == [320]


def test_first_audio_latency_from_start():
    """The time from Twilio start to the first frame sent to the caller is kept."""
    state = BridgeState(session=config(), greeting="Greet.")
    model(state, updated())
    twilio(state, START, now=1000)
    created(state, "resp_1", "req_1")
    audio(state, "resp_1", "item_1", 100, now=1500)  # under 20 ms: not sent yet
    audio(state, "resp_1", "item_1", 100, now=1800)
    assert state.figures().start_to_first_audio_ms == 800


# ------------------------------------------------------------------ barge-in


def test_barge_in_truncates_at_heard_position():
    """Speech during a reply truncates it at what the caller has heard."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200)  # mark a1 after 400 ms
    audio(state, "resp_1", "item_1", 1600)  # mark a2 after 600 ms
    echo(state, "a1")
    actions = model(state, SpeechStarted("item_u", 0))
    assert actions == [ClearCaller(SID), Truncate("item_1", 400)]
    assert state.figures().barge_ins == 1


def _two_marks_first_echoed_at(now: int) -> BridgeState:
    """800 ms of an item sent at once (marks a1 at 400 ms, a2 at 800 ms); a1 echoed."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200, now=0)
    audio(state, "resp_1", "item_1", 3200, now=0)
    twilio(state, Mark(SID, "a1", 100), now=now)
    return state


def test_heard_position_runs_on_from_the_last_echo():
    """Between marks, the caller has heard the echoed position plus the time since
    the echo at 8 bytes a millisecond."""
    state = _two_marks_first_echoed_at(1000)
    actions = model(state, SpeechStarted("item_u", 0), now=1150)
    assert actions == [ClearCaller(SID), Truncate("item_1", 400 + 150)]


def test_interpolated_position_stops_at_the_next_pending_mark():
    """A mark not yet echoed means the audio before it has not all played."""
    state = _two_marks_first_echoed_at(1000)
    actions = model(state, SpeechStarted("item_u", 0), now=9000)
    assert actions == [ClearCaller(SID), Truncate("item_1", 800)]


def test_interpolated_position_stops_at_the_audio_sent():
    """With every mark echoed, the estimate never passes what went to Twilio."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200, now=0)  # a1 at 400 ms
    twilio(state, Mark(SID, "a1", 100), now=1000)
    actions = model(state, SpeechStarted("item_u", 0), now=9000)
    assert actions == [Truncate("item_1", 400)]  # nothing queued: no clear


def test_no_echo_yet_means_nothing_heard():
    """Before an item's first mark comes back, its playback may not have begun."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200, now=0)
    actions = model(state, SpeechStarted("item_u", 0), now=5000)
    assert actions == [ClearCaller(SID), Truncate("item_1", 0)]


def test_heard_audio_follows_echoed_marks():
    """Bytes heard advance only when a mark comes back, to the mark's position."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200)
    audio(state, "resp_1", "item_1", 1700)
    assert state.item_audio("item_1") == ItemAudio("item_1", 4900, 4800, 0)
    echo(state, "a1")
    progress = state.item_audio("item_1")
    assert progress == ItemAudio("item_1", 4900, 4800, 3200)
    assert progress.heard_ms == 400
    assert state.item_audio("item_x") is None


def test_truncate_never_passes_the_audio_sent():
    """With all sent audio heard, the cut is at the sent length, within the model's.

    4100 bytes came from the model; 4000 went out as whole 20 ms frames and were
    heard; the 100-byte tail waiting for the next delta was never played.
    """
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 4100)
    echo(state, "a1")
    actions = model(state, SpeechStarted("item_u", 0))
    assert actions == [Truncate("item_1", 4000 // 8)]  # nothing queued: no clear
    assert 4000 // 8 <= 4100 // 8


def test_no_truncate_when_playback_had_finished():
    """Once the last mark of a finished item is back, speech interrupts nothing."""
    state = ready()
    created(state, "resp_1")
    names = mark_names(audio(state, "resp_1", "item_1", 3300))
    names += mark_names(model(state, OutputAudioDone("resp_1", "item_1")))
    done(state, "resp_1")
    echo(state, *names)
    assert model(state, SpeechStarted("item_u", 0)) == []
    assert state.figures().barge_ins == 0


def test_barge_in_after_response_done_while_still_playing():
    """Audio still playing after response.done is cleared and truncated (C6)."""
    state = ready(interrupt=False)
    created(state, "resp_1")
    names = mark_names(audio(state, "resp_1", "item_1", 4100))
    names += mark_names(model(state, OutputAudioDone("resp_1", "item_1")))
    done(state, "resp_1")
    echo(state, names[0])  # the 4000 bytes of whole frames: 500 ms
    assert model(state, SpeechStarted("item_u", 0)) == [
        ClearCaller(SID),
        Truncate("item_1", 500),
    ]  # no response is active, so no cancel even with interrupt_response off


def test_late_deltas_of_an_interrupted_response_are_dropped():
    """Audio of the cut response that arrives after speech_started is never played."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200)
    model(state, SpeechStarted("item_u", 0))
    assert audio(state, "resp_1", "item_1", 3200) == []
    assert audio(state, "resp_1", "item_2", 3200) == []  # same response
    assert model(state, OutputAudioDone("resp_1", "item_1")) == []
    assert state.figures().stale_audio_bytes_dropped == 6400
    done(state, "resp_1")
    created(state, "resp_2")
    assert frame_sizes(audio(state, "resp_2", "item_3", 640)) == [320, 320]


def test_marks_returned_by_clear_do_not_count_as_heard():
    """clear returns every pending mark at once; those echoes prove nothing heard."""
    state = ready()
    created(state, "resp_1")
    names = mark_names(audio(state, "resp_1", "item_1", 3200))
    names += mark_names(audio(state, "resp_1", "item_1", 3200))
    actions = model(state, SpeechStarted("item_u", 0))
    assert actions == [ClearCaller(SID), Truncate("item_1", 0)]
    model(state, SpeechStopped("item_u", 900))
    done(state, "resp_1")
    created(state, "resp_2")
    fresh = mark_names(audio(state, "resp_2", "item_2", 1600))
    assert echo(state, *names) == []  # Twilio returns a1, a2 after the clear
    actions = model(state, SpeechStarted("item_u2", 0))
    assert Truncate("item_2", 0) in actions  # not 400 or 800 ms
    assert fresh == ["a3"]


def test_interrupt_response_on_leaves_cancelling_to_the_server():
    """With interrupt_response on, the bridge never sends response.cancel."""
    state = ready(interrupt=True)
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 1600)
    actions = model(state, SpeechStarted("item_u", 0))
    assert of(actions, CancelResponse) == []


def test_interrupt_response_off_cancels_the_active_response():
    """With interrupt_response off, the bridge clears, truncates and cancels."""
    state = ready(interrupt=False)
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 1600)
    assert model(state, SpeechStarted("item_u", 0)) == [
        ClearCaller(SID),
        Truncate("item_1", 0),
        CancelResponse("resp_1"),
    ]
    assert of(model(state, SpeechStarted("item_u", 10)), CancelResponse) == []


def test_effective_session_flags_win_over_the_config():
    """interrupt_response is read from session.updated, not only from the config."""
    state = BridgeState(session=config(interrupt=True))
    model(state, updated(interrupt=False))
    twilio(state, START)
    created(state, "resp_1")
    assert model(state, SpeechStarted("item_u", 0)) == [CancelResponse("resp_1")]


def test_speech_before_any_audio_only_cancels():
    """A response without audio yet is cancelled (interrupt off) and muted."""
    state = ready(interrupt=False)
    created(state, "resp_1")
    assert model(state, SpeechStarted("item_u", 0)) == [CancelResponse("resp_1")]
    assert audio(state, "resp_1", "item_1", 640) == []


# ------------------------------------------------------------------ responses


def test_tool_output_during_an_active_response_waits_for_response_done():
    """The function call's name comes from its item; response.create waits."""
    state = ready()
    created(state, "resp_1")
    call = Item("function_call", "item_f", None, "in_progress", "call_1", "lookup", "")
    assert model(state, OutputItemAdded("resp_1", 1, call)) == []
    args = FunctionCallArgumentsDone("resp_1", "item_f", "call_1", '{"q":1}')
    assert model(state, args) == [RunTool("call_1", "lookup", '{"q":1}')]
    finished = Item(
        "function_call", "item_f", None, "completed", "call_1", "lookup", '{"q":1}'
    )
    assert model(state, OutputItemDone("resp_1", 1, finished)) == []  # runs once
    assert state.on_tool_result("call_1", '{"ok":true}') == [
        AddToolOutput("call_1", '{"ok":true}')
    ]
    assert done(state, "resp_1") == [CreateResponse("req_1")]
    created(state, "resp_2", "req_1")
    assert state.active_response_id == "resp_2"


def test_tool_result_after_response_done_asks_at_once():
    """When no response is active, the follow-up response.create goes right away."""
    state = ready()
    created(state, "resp_1")
    call = Item("function_call", "item_f", None, "completed", "call_1", "lookup", "{}")
    assert model(state, OutputItemDone("resp_1", 0, call)) == [
        RunTool("call_1", "lookup", "{}")
    ]
    done(state, "resp_1")
    assert state.on_tool_result("call_1", "{}") == [
        AddToolOutput("call_1", "{}"),
        CreateResponse("req_1"),
    ]


def test_two_tool_calls_get_one_follow_up():
    """The follow-up response waits for every tool of the turn."""
    state = ready()
    created(state, "resp_1")
    for n in (1, 2):
        model(
            state,
            OutputItemAdded(
                "resp_1", n, Item("function_call", f"f{n}", None, None, f"c{n}", "t")
            ),
        )
        model(state, FunctionCallArgumentsDone("resp_1", f"f{n}", f"c{n}", "{}"))
    done(state, "resp_1")
    assert state.on_tool_result("c1", "1") == [AddToolOutput("c1", "1")]
    assert state.on_tool_result("c2", "2") == [
        AddToolOutput("c2", "2"),
        CreateResponse("req_1"),
    ]


def test_unknown_tool_result_is_ignored():
    """A result for a call the model never made produces nothing."""
    assert ready().on_tool_result("call_x", "{}") == []


def test_incomplete_function_call_is_not_run():
    """A function call cut by an interruption does not run."""
    state = ready()
    created(state, "resp_1")
    call = Item("function_call", "f", None, "incomplete", "c", "lookup", "{")
    assert model(state, OutputItemDone("resp_1", 0, call)) == []


def test_response_create_is_never_sent_while_one_is_active():
    """Instructions queue up; each response.done releases exactly one."""
    state = ready()
    assert state.instruct("First.") == [
        AddMessage("system", "First."),
        CreateResponse("req_1"),
    ]
    assert state.instruct("Second.") == [AddMessage("system", "Second.")]
    assert state.instruct("Third.") == [AddMessage("system", "Third.")]
    created(state, "resp_1", "req_1")
    assert done(state, "resp_1") == [CreateResponse("req_2")]
    assert state.instruct("Fourth.") == [AddMessage("system", "Fourth.")]
    created(state, "resp_2", "req_2")
    assert done(state, "resp_2") == [CreateResponse("req_3")]


def test_random_traffic_never_overlaps_responses():
    """Whatever the order of events, two response.create never overlap.

    The fake server here answers the caller by itself at random moments; when
    that races with a response.create in flight, it refuses ours as the real
    one does, and the state must send it again later, never on top.
    """
    rng = random.Random(3)
    for _ in range(50):
        state = ready(greeting="Greet.")
        active: str | None = None
        outstanding: str | None = None  # a CreateResponse not yet created
        pending_calls: list[str] = []
        for serial in range(1, 80):
            choice = rng.randrange(6)
            actions: list[Any] = []
            if choice == 0:
                actions = state.instruct(f"note {serial}")
            elif choice == 1 and pending_calls:
                actions = state.on_tool_result(pending_calls.pop(), "{}")
            elif choice == 2 and active is None and rng.random() < 0.3:
                active = f"auto_{serial}"  # the server answers the caller itself
                actions = created(state, active)
                if outstanding is not None:
                    refusal = ServerError(
                        "invalid_request_error",
                        "conversation_already_has_active_response",
                        "Conversation already has an active response",
                        None,
                        f"evt_{outstanding}",
                    )
                    actions += model(state, refusal)
                    outstanding = None
            elif choice == 2 and active is None and outstanding is not None:
                active = f"resp_{serial}"
                actions = created(state, active, outstanding)
                outstanding = None
            elif choice == 3 and active is not None:
                call = f"call_{serial}"
                item = Item("function_call", f"f{serial}", None, None, call, "t")
                model(state, OutputItemAdded(active, 0, item))
                actions = model(
                    state, FunctionCallArgumentsDone(active, f"f{serial}", call, "{}")
                )
                pending_calls += [a.call_id for a in of(actions, RunTool)]
            elif choice == 4 and active is not None:
                actions = done(state, active)
                active = None
            else:
                actions = model(state, SpeechStopped("u", 0), now=serial * 10_000)
                actions += twilio(state, media(serial), now=serial * 10_000 + 2_500)
            for request in of(actions, CreateResponse):
                assert active is None and outstanding is None, "overlapping create"
                outstanding = request.request_id


def test_refusal_after_a_misattributed_response_requeues_the_request():
    """A metadata-less response taken for ours, then our refusal: ours is retried."""
    state = ready()
    assert state.instruct("x")[-1] == CreateResponse("req_1")
    created(state, "resp_auto")  # no metadata, so first taken as req_1
    refusal = ServerError(
        "invalid_request_error",
        "conversation_already_has_active_response",
        "Conversation already has an active response",
        None,
        "evt_req_1",
    )
    assert model(state, refusal) == []
    assert done(state, "resp_auto") == [CreateResponse("req_1")]


def test_queued_request_waits_for_the_servers_answer_to_the_caller():
    """After the caller's turn, the server's own response goes first."""
    state = ready(create=True)
    created(state, "resp_1")
    call = Item("function_call", "f", None, "completed", "c1", "lookup", "{}")
    model(state, OutputItemDone("resp_1", 0, call))
    state.on_tool_result("c1", "{}")
    model(state, SpeechStarted("item_u", 0))
    assert done(state, "resp_1") == []  # the caller is speaking
    assert model(state, SpeechStopped("item_u", 900), now=1000) == []
    assert created(state, "resp_2") == []  # the server's answer (no metadata)
    assert done(state, "resp_2") == [CreateResponse("req_1")]


def test_queued_request_goes_if_the_server_never_answers():
    """If no response follows the caller's turn within the grace, the queue moves."""
    state = ready(create=True)
    model(state, SpeechStarted("item_u", 0), now=500)
    state.instruct("Say hello.")
    model(state, SpeechStopped("item_u", 900), now=1000)
    assert of(twilio(state, media(1), now=2000), CreateResponse) == []
    assert twilio(state, media(2), now=3000) == [
        AppendAudio(media(2).payload_b64),
        CreateResponse("req_1"),
    ]


def test_without_create_response_the_queue_moves_when_speech_stops():
    """When the server does not answer by itself, nothing waits for it."""
    state = ready(create=False)
    model(state, SpeechStarted("item_u", 0))
    assert of(state.instruct("Answer."), CreateResponse) == []
    assert model(state, SpeechStopped("item_u", 0)) == [CreateResponse("req_1")]


def test_idle_timeout_waits_for_the_servers_response():
    """timeout_triggered means the server answers; queued requests wait for it."""
    state = ready()
    model(state, InputAudioTimeoutTriggered("item_t", 0, 8000), now=100)
    assert of(state.instruct("x"), CreateResponse) == []
    created(state, "resp_auto")
    assert done(state, "resp_auto") == [CreateResponse("req_1")]


def test_active_response_error_requeues_the_request():
    """If the server still refuses a response.create, it is sent again later."""
    state = ready()
    assert state.instruct("x")[-1] == CreateResponse("req_1")
    error = ServerError(
        "invalid_request_error",
        "conversation_already_has_active_response",
        "Conversation already has an active response in progress: resp_9.",
        None,
        "evt_req_1",
    )
    assert model(state, error) == []
    created(state, "resp_9")
    assert done(state, "resp_9") == [CreateResponse("req_1")]


def test_response_without_metadata_is_ours_even_while_the_caller_speaks():
    """A server that does not echo metadata still gets its responses matched."""
    state = ready()
    assert state.instruct("x")[-1] == CreateResponse("req_1")
    model(state, SpeechStarted("item_u", 0))
    created(state, "resp_1")  # ours, without metadata
    model(state, SpeechStopped("item_u", 0), now=100)
    created(state, "resp_2")  # the server's answer to the caller
    done(state, "resp_1")
    assert state.instruct("y") == [AddMessage("system", "y")]
    assert done(state, "resp_2") == [CreateResponse("req_2")]


def test_other_error_on_response_create_moves_the_queue_on():
    """A response.create refused for another reason is dropped, not waited for."""
    state = ready()
    state.instruct("a")
    state.instruct("b")
    error = ServerError(
        "invalid_request_error", "invalid_value", "bad", None, "evt_req_1"
    )
    assert model(state, error) == [CreateResponse("req_2")]


def test_create_response_carries_its_id_in_metadata_and_event_id():
    """The request id lets response.created and errors be matched to it."""
    event = json.loads(CreateResponse("req_7", "Say hi.").to_json())
    assert event["response"]["metadata"] == {"bridge_request": "req_7"}
    assert event["event_id"] == "evt_req_7"
    assert event["response"]["instructions"] == "Say hi."


# ------------------------------------------------------------------ transcripts


def test_caller_transcripts_are_saved_and_partials_broadcast():
    """Caller transcription arrives whenever; each utterance is saved once."""
    state = ready()
    delta = InputTranscriptionDelta("item_u", "もし")
    assert model(state, delta) == [BroadcastPartial("customer", "item_u", "もし")]
    completed = InputTranscriptionCompleted("item_u", " もしもし ")
    assert model(state, completed) == [SaveTranscript("customer", "もしもし", "item_u")]
    assert model(state, InputTranscriptionCompleted("item_v", "  ")) == []


def test_ai_transcript_is_saved_once_its_audio_has_played():
    """The AI line is saved when its last mark comes back, not when generated."""
    state = ready()
    created(state, "resp_1")
    partial = model(state, OutputAudioTranscriptDelta("resp_1", "item_1", "はい"))
    assert partial == [BroadcastPartial("ai", "item_1", "はい")]
    names = mark_names(audio(state, "resp_1", "item_1", 1000))
    names += mark_names(model(state, OutputAudioDone("resp_1", "item_1")))
    text = OutputAudioTranscriptDone("resp_1", "item_1", "はい、承ります。")
    assert model(state, text) == []
    assert done(state, "resp_1") == []
    assert echo(state, *names) == [
        SaveTranscript("ai", "はい、承ります。", "item_1", interrupted=False)
    ]


def test_interrupted_ai_transcript_is_flagged():
    """A barge-in marks the AI line as interrupted."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200)
    model(state, OutputAudioTranscriptDone("resp_1", "item_1", "長い説明です"))
    actions = model(state, SpeechStarted("item_u", 0))
    assert actions[-1] == SaveTranscript(
        "ai", "長い説明です", "item_1", interrupted=True
    )


def test_ai_transcript_falls_back_to_its_deltas():
    """Without transcript.done, the deltas received make the saved line."""
    state = ready()
    created(state, "resp_1")
    for part in ("お待ち", "ください"):
        model(state, OutputAudioTranscriptDelta("resp_1", "item_1", part))
    audio(state, "resp_1", "item_1", 800)
    model(state, SpeechStarted("item_u", 0))
    actions = done(state, "resp_1")
    assert actions == [
        SaveTranscript("ai", "お待ちください", "item_1", interrupted=True)
    ]


# ------------------------------------------------------------------ ending


def test_goodbye_hangs_up_only_after_its_audio_has_played():
    """say_and_hang_up speaks the text, then hangs up at the last echoed mark."""
    state = ready()
    actions = state.say_and_hang_up("本日はありがとうございました。")
    assert actions == [
        CreateResponse(
            "req_1",
            SAY_TEMPLATE.format(text="本日はありがとうございました。"),
            "none",
        )
    ]
    created(state, "resp_1", "req_1")
    names = mark_names(audio(state, "resp_1", "item_1", 2000))
    names += mark_names(model(state, OutputAudioDone("resp_1", "item_1")))
    model(
        state, OutputAudioTranscriptDone("resp_1", "item_1", "ありがとうございました")
    )
    assert done(state, "resp_1") == []
    assert echo(state, names[0]) == []
    assert echo(state, names[1]) == [
        SaveTranscript("ai", "ありがとうございました", "item_1"),
        HangUp("goodbye"),
    ]
    assert state.ended
    assert twilio(state, media(1)) == []


def test_goodbye_waits_for_the_reply_in_progress():
    """The goodbye response is created after the active one is done."""
    state = ready()
    created(state, "resp_1")
    assert state.say_and_hang_up("Bye.") == []
    assert state.instruct("ignored once closing") == []
    assert of(done(state, "resp_1"), CreateResponse) == [
        CreateResponse("req_1", SAY_TEMPLATE.format(text="Bye."), "none")
    ]


def test_goodbye_is_recognised_without_metadata():
    """A fake that does not echo metadata still gets its goodbye recognised."""
    state = ready()
    state.say_and_hang_up("Bye.")
    created(state, "resp_1")
    assert done(state, "resp_1") == [HangUp("goodbye")]  # no audio to wait for


def test_hangup_is_immediate_and_keeps_what_was_said():
    """hangup ends at once; an unsaved AI line is saved as interrupted."""
    state = ready()
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 800)
    model(state, OutputAudioTranscriptDelta("resp_1", "item_1", "少々"))
    assert state.hangup() == [
        SaveTranscript("ai", "少々", "item_1", interrupted=True),
        HangUp("operator"),
    ]
    assert state.hangup() == []


def test_stop_ends_the_call():
    """Twilio's stop ends the call; later events produce nothing."""
    state = ready()
    assert twilio(state, Stop(SID, "CA1", "AC1", 9)) == [HangUp("stop")]
    assert state.ended
    assert audio(state, "r", "i", 640) == []
    assert state.instruct("x") == []


# ------------------------------------------------------------------ reconnect


def test_reconnect_reseeds_the_conversation_after_session_updated():
    """After a model drop, context is restored before audio and queued requests."""
    state = ready()
    created(state, "resp_1")
    actions = state.on_model_reconnected(
        [("customer", "予約したい"), ("ai", "承知しました"), ("operator", "急いで")]
    )
    assert actions == [UpdateSession(config())]
    assert state.active_response_id is None
    assert not state.session_confirmed
    assert twilio(state, media(1)) == []  # buffered until the new session is ready
    state.instruct("Continue.")
    assert model(state, updated()) == [
        AddMessage("user", "予約したい"),
        AddMessage("assistant", "承知しました"),
        AddMessage("system", "operator: 急いで"),
        AddMessage("system", "Continue."),
        AppendAudio(media(1).payload_b64),
        CreateResponse("req_1"),
    ]


def test_reconnect_flushes_old_audio_and_forgets_running_tools():
    """Buffered tail audio still plays; results of tools from the lost session drop."""
    state = ready()
    created(state, "resp_1")
    call = Item("function_call", "f", None, "completed", "c1", "lookup", "{}")
    model(state, OutputItemDone("resp_1", 0, call))
    audio(state, "resp_1", "item_1", 100)  # under a frame: held back
    actions = state.on_model_reconnected([])
    assert frame_sizes(actions) == [100]
    assert actions[-1] == UpdateSession(config())
    assert state.on_tool_result("c1", "{}") == []


def test_reconnect_replays_an_unfinished_goodbye():
    """A goodbye lost with the model session is asked again on the new one."""
    state = ready()
    state.say_and_hang_up("Bye.")
    created(state, "resp_1", "req_1")
    state.on_model_reconnected([])
    assert of(model(state, updated()), CreateResponse) == [
        CreateResponse("req_1", SAY_TEMPLATE.format(text="Bye."), "none")
    ]


def test_reseed_keeps_the_latest_lines_within_bounds():
    """Only the most recent lines that fit are re-seeded, in order."""
    lines = [("customer", f"line {n}") for n in range(100)]
    kept = reseed_messages(lines, max_lines=3)
    assert [m.text for m in kept] == ["line 97", "line 98", "line 99"]
    assert reseed_messages([("ai", "x" * 50)], max_chars=10) == []


# ------------------------------------------------------------------ figures


def test_usage_latency_and_barge_ins_are_counted():
    """Usage sums over response.done; turn latency is speech stop → first audio."""
    state = ready()
    model(state, SpeechStopped("item_u", 0), now=5000)
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200, now=5600)
    audio(state, "resp_1", "item_1", 3200, now=5700)  # same turn: not counted again
    model(state, SpeechStarted("item_u2", 0), now=6000)
    done(state, "resp_1", Usage(total_tokens=10, input_tokens=6, output_tokens=4))
    model(state, SpeechStopped("item_u2", 0), now=7000)
    created(state, "resp_2")
    audio(state, "resp_2", "item_2", 320, now=7450)
    done(state, "resp_2", Usage(total_tokens=5, input_tokens=3, output_tokens=2))
    figures = state.figures()
    assert figures.usage == Usage(total_tokens=15, input_tokens=9, output_tokens=6)
    assert figures.responses == 2
    assert figures.turn_latencies_ms == (600, 450)
    assert figures.barge_ins == 1
    assert figures.start_to_first_audio_ms == 5600


# ------------------------------------------------------------------ wire output


def test_every_model_command_validates_against_the_sdk():
    """Each ModelCommand's JSON is a valid RealtimeClientEvent."""
    commands: list[ModelCommand] = [
        UpdateSession(config()),
        AppendAudio("//8="),
        AddMessage("system", "x"),
        AddMessage("user", "x"),
        AddMessage("assistant", "x"),
        AddToolOutput("call_1", "{}"),
        Truncate("item_1", 400),
        CreateResponse("req_1"),
        CreateResponse("req_2", "Say bye.", "none"),
        CancelResponse("resp_1"),
    ]
    for command in commands:
        validate_client(command.to_json())


def test_twilio_commands_are_exact_media_streams_messages():
    """SendAudio, SendMark and ClearCaller serialise to media, mark and clear."""
    commands: list[TwilioCommand] = [
        SendAudio(SID, "//8="),
        SendMark(SID, "a1"),
        ClearCaller(SID),
    ]
    assert [json.loads(c.to_json()) for c in commands] == [
        {"event": "media", "streamSid": SID, "media": {"payload": "//8="}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "a1"}},
        {"event": "clear", "streamSid": SID},
    ]
