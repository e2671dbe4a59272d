"""One state machine, two caller transports: μ-law 8 kHz and PCM16 24 kHz.

The phone's behaviour is covered in test_bridge_state.py; here the same rules are
checked for the browser's format (48 bytes a millisecond, 960-byte frames) and
for the caller-neutral entry points a WebRTC transport uses.
"""

from __future__ import annotations

import base64
import json
import random

import pytest

from realtime.protocol.bridge_state import (
    AppendAudio,
    BridgeState,
    ClearCaller,
    CreateResponse,
    HangUp,
    ItemAudio,
    SendAudio,
    SendMark,
    SessionMisconfigured,
    Truncate,
    UpdateSession,
)
from realtime.protocol.caller_audio import (
    MULAW_8K,
    PCM16_24K,
    caller_audio_format,
)
from realtime.protocol.openai_events import (
    OutputAudioDelta,
    ResponseCreated,
    ServerVad,
    SessionConfig,
    SessionUpdated,
    SpeechStarted,
    session_format_ok,
)
from tests.realtime.protocol.test_openai_events import validate_client

WEB_SID = "web-7"
PCM_FRAME = 960  # 20 ms of PCM16 at 24 kHz


def web_config() -> SessionConfig:
    vad = ServerVad(create_response=True, interrupt_response=True)
    return SessionConfig(instructions="Be kind.", turn_detection=vad, audio=PCM16_24K)


def web_updated(fmt: dict[str, object] | None = None) -> SessionUpdated:
    fmt = fmt or {"type": "audio/pcm", "rate": 24000}
    return SessionUpdated(
        {
            "type": "realtime",
            "audio": {
                "input": {"format": fmt, "turn_detection": {"type": "server_vad"}},
                "output": {"format": fmt, "voice": "marin"},
            },
        }
    )


def web_ready(greeting: str | None = None) -> BridgeState:
    state = BridgeState(session=web_config(), greeting=greeting)
    state.on_model_connected()
    state.on_server_event(web_updated(), now_ms=0)
    state.on_caller_start(WEB_SID, call_ref="7", now_ms=0)
    return state


def pcm(count: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(count)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio(state: BridgeState, size: int, now: int = 0) -> list[object]:
    delta = OutputAudioDelta("resp_1", "item_1", b64(pcm(size, size)))
    return state.on_server_event(delta, now_ms=now)


def sizes(actions: list[object]) -> list[int]:
    return [
        len(base64.b64decode(a.payload_b64))
        for a in actions
        if isinstance(a, SendAudio)
    ]


def marks(actions: list[object]) -> list[str]:
    return [a.name for a in actions if isinstance(a, SendMark)]


# ------------------------------------------------------------------ formats


def test_formats_know_their_bytes_per_ms_and_frame():
    """μ-law is 8 bytes a ms (160 a frame); PCM16 24 kHz is 48 (960 a frame)."""
    assert (MULAW_8K.bytes_per_ms, MULAW_8K.frame_bytes) == (8, 160)
    assert (PCM16_24K.bytes_per_ms, PCM16_24K.frame_bytes) == (48, 960)
    assert caller_audio_format("audio/pcm") is PCM16_24K
    with pytest.raises(ValueError):
        caller_audio_format("audio/pcma")


def test_phone_session_update_is_unchanged_pcmu():
    """The default session is audio/pcmu both ways, with no rate (as before)."""
    session = json.loads(UpdateSession(SessionConfig()).to_json())["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}


def test_web_session_update_asks_for_pcm_24k_both_ways():
    """A browser call's session.update sets audio/pcm at 24 kHz in and out, valid."""
    frame = UpdateSession(web_config()).to_json()
    validate_client(frame)
    session = json.loads(frame)["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_format_check_follows_the_expected_format():
    """pcm passes for a PCM call and fails for a phone call, and the reverse."""
    pcm_session = web_updated().session
    assert session_format_ok(pcm_session, PCM16_24K)
    assert not session_format_ok(pcm_session)  # the phone expects pcmu
    rate_left_out = web_updated({"type": "audio/pcm"}).session
    assert session_format_ok(rate_left_out, PCM16_24K)  # the server's default: 24 kHz
    wrong_rate = web_updated({"type": "audio/pcm", "rate": 16000}).session
    assert not session_format_ok(wrong_rate, PCM16_24K)


def test_web_call_refuses_a_pcmu_session():
    """A browser call whose session comes back as pcmu cannot work: it says so."""
    state = BridgeState(session=web_config())
    actions = state.on_server_event(web_updated({"type": "audio/pcmu"}), now_ms=0)
    assert len(actions) == 1 and isinstance(actions[0], SessionMisconfigured)
    assert "audio/pcm" in actions[0].detail
    assert not state.session_confirmed


# ------------------------------------------------------------------ outbound audio


def test_pcm_audio_goes_out_in_whole_20ms_frames_of_960_bytes():
    """Deltas are cut into 960-byte multiples, at most two frames a message; the
    remainder waits for the next delta."""
    state = web_ready()
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    assert sizes(audio(state, 2500)) == [1920]  # 580 bytes held back
    assert sizes(audio(state, 400)) == [960]  # 580 + 400 = 980: one frame, 20 held
    assert state.item_audio("item_1") == ItemAudio("item_1", 2900, 2880, 0, 48)


def test_a_default_frame_size_that_is_not_whole_frames_is_refused():
    """frame_bytes must be whole 20 ms frames of the session's format."""
    with pytest.raises(ValueError, match="multiple of 960"):
        BridgeState(session=web_config(), frame_bytes=320)


def test_pcm_marks_are_spaced_by_200ms_of_pcm():
    """The first batch is marked; then a mark after at least 200 ms (9600 bytes)."""
    state = web_ready()
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    assert marks(audio(state, 1920)) == ["a1"]
    sent = []
    for _ in range(5):  # 5 × 40 ms = 200 ms after the first mark
        sent += audio(state, 1920)
    assert marks(sent) == ["a2"]


# ------------------------------------------------------------------ barge-in


def test_web_barge_in_truncates_at_the_played_position_in_ms():
    """A mark played at t=1000 plus 150 ms of playback since: 400 + 150 ms."""
    state = web_ready()
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    audio(state, 400 * 48)  # mark a1 at 400 ms
    audio(state, 400 * 48)  # mark a2 at 800 ms
    state.on_playback_mark("a1", now_ms=1000)
    actions = state.on_server_event(SpeechStarted("item_u", 0), now_ms=1150)
    assert actions == [ClearCaller(WEB_SID), Truncate("item_1", 550)]


def test_a_late_playback_report_counts_from_when_the_mark_played():
    """The page reports at t=1050 that a1 played at t=1000: the cut at t=1150 is
    400 + 150 ms, not 400 + 100."""
    state = web_ready()
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    audio(state, 400 * 48)
    audio(state, 400 * 48)
    state.on_playback_mark("a1", now_ms=1050, played_at_ms=1000)
    actions = state.on_server_event(SpeechStarted("item_u", 0), now_ms=1150)
    assert Truncate("item_1", 550) in actions


def test_a_played_time_in_the_future_is_taken_as_now():
    """A report cannot prove playback before it was made, nor after."""
    state = web_ready()
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    audio(state, 400 * 48)
    audio(state, 400 * 48)
    state.on_playback_mark("a1", now_ms=1000, played_at_ms=5000)
    actions = state.on_server_event(SpeechStarted("item_u", 0), now_ms=1100)
    assert Truncate("item_1", 500) in actions


def test_phone_barge_in_unchanged_by_the_generalisation():
    """μ-law: 8 bytes a ms, so 3200 bytes heard is 400 ms."""
    vad = ServerVad(create_response=True, interrupt_response=True)
    state = BridgeState(session=SessionConfig(turn_detection=vad))
    state.on_model_connected()
    state.on_server_event(
        SessionUpdated(
            {
                "audio": {
                    "input": {"format": {"type": "audio/pcmu"}},
                    "output": {"format": {"type": "audio/pcmu"}},
                }
            }
        ),
        now_ms=0,
    )
    state.on_caller_start("MZ1", call_ref="CA1", now_ms=0)
    state.on_server_event(ResponseCreated("resp_1"), now_ms=0)
    state.on_server_event(
        OutputAudioDelta("resp_1", "item_1", b64(pcm(3200))), now_ms=0
    )
    state.on_playback_mark("a1", now_ms=100)
    actions = state.on_server_event(SpeechStarted("item_u", 0), now_ms=100)
    assert Truncate("item_1", 400) in actions


# ------------------------------------------------------------------ caller side


def test_greeting_waits_for_the_caller_start_of_another_transport():
    """The greeting goes out once the web caller's stream is up."""
    state = BridgeState(session=web_config(), greeting="Greet.")
    state.on_model_connected()
    assert state.on_server_event(web_updated(), now_ms=0) == []
    actions = state.on_caller_start(WEB_SID, call_ref="7", now_ms=5)
    assert CreateResponse("req_1") in actions
    assert state.stream_sid == WEB_SID and state.call_sid == "7"


def test_caller_audio_before_the_session_is_buffered_then_sent_in_order():
    """Web audio that arrives before session.updated follows it, in order."""
    state = BridgeState(session=web_config())
    state.on_caller_start(WEB_SID, call_ref="7", now_ms=0)
    frames = [b64(pcm(PCM_FRAME, n)) for n in range(3)]
    for n, frame in enumerate(frames):
        assert state.on_caller_audio(frame, now_ms=n * 20) == []
    actions = state.on_server_event(web_updated(), now_ms=100)
    assert [a for a in actions if isinstance(a, AppendAudio)] == [
        AppendAudio(f) for f in frames
    ]
    assert state.on_caller_audio(frames[0], now_ms=120) == [AppendAudio(frames[0])]


def test_caller_stop_hangs_up_and_ends_the_state():
    """The web caller hanging up ends the call like Twilio's stop."""
    state = web_ready()
    assert state.on_caller_stop(now_ms=10) == [HangUp("stop")]
    assert state.ended
    assert state.on_caller_audio(b64(pcm(PCM_FRAME)), now_ms=20) == []
