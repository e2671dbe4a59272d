"""The instant greeting (F-73) in the bridge state machine, and its pure helpers."""

from __future__ import annotations

import base64
import json

import pytest

from realtime.protocol.bridge_state import (
    AddMessage,
    AppendAudio,
    BridgeState,
    ClearCaller,
    CreateResponse,
    DeleteItem,
    GreetingSpoken,
    SaveTranscript,
    SendAudio,
    SendMark,
    Truncate,
    UpdateSession,
)
from realtime.protocol.greeting import (
    CHUNK_MS,
    CUT_ITEM_ID,
    GREETING_ITEM_ID,
    MAX_GREETING_BYTES,
    CachedGreeting,
    GreetingRecorder,
    heard_text,
)
from realtime.protocol.openai_events import (
    OutputAudioDone,
    OutputAudioTranscriptDone,
    ResponseDone,
    SpeechStarted,
)
from realtime.protocol.twilio_media import Mark
from tests.realtime.protocol.test_bridge_state import (
    SID,
    START,
    audio,
    config,
    created,
    echo,
    media,
    model,
    of,
    twilio,
    ulaw,
    updated,
)
from tests.realtime.protocol.test_openai_events import validate_client

TEXT = "お電話ありがとうございます。デモ商事です。"
GREETING_AUDIO = ulaw(8000 * 2, 7)  # 2 s of μ-law


def cached() -> CachedGreeting:
    return CachedGreeting.from_audio(TEXT, GREETING_AUDIO)


def sent_audio(actions: list[object]) -> bytes:
    return b"".join(base64.b64decode(a.payload_b64) for a in of(actions, SendAudio))


# ------------------------------------------------------------------ pure parts


def test_cached_greeting_is_cut_into_a_short_first_chunk_then_seconds():
    second = CHUNK_MS * 8
    greeting = CachedGreeting.from_audio(TEXT, ulaw(320 + second * 2 + 100))
    assert greeting.chunk_sizes == (320, second, second, 100)
    joined = b"".join(base64.b64decode(c) for c in greeting.chunks_b64)
    assert joined == greeting.audio
    assert greeting.duration_ms == (320 + 2 * second + 100) // 8
    assert CachedGreeting.from_audio(TEXT, ulaw(100)).chunk_sizes == (100,)


@pytest.mark.parametrize(
    ("text", "audio"),
    [
        (TEXT, b""),
        ("   ", b"\xff" * 160),
        (TEXT, b"\xff" * (MAX_GREETING_BYTES + 1)),
    ],
)
def test_a_cached_greeting_needs_text_and_sensible_audio(text, audio):
    with pytest.raises(ValueError):
        CachedGreeting.from_audio(text, audio)


def test_heard_text_follows_the_share_of_audio_heard():
    assert heard_text("abcdefghij", 0, 100) == ""
    assert heard_text("abcdefghij", 30, 100) == "abc"
    assert heard_text("abcdefghij", 100, 100) == "abcdefghij"
    assert heard_text("abcdefghij", 150, 100) == "abcdefghij"
    assert heard_text("abcdefghij", 10, 0) == ""


def test_recorder_keeps_only_its_response_and_one_item():
    recorder = GreetingRecorder("resp_1")
    recorder.add("resp_1", "item_1", b"ab")
    recorder.add("resp_other", "item_9", b"zz")
    recorder.add("resp_1", "item_1", b"cd")
    spoken = recorder.result(status="completed", transcript="hi", cut=False)
    assert spoken == GreetingSpoken("hi", b"abcd")
    recorder.add("resp_1", "item_2", b"ef")  # a second audio item: not a greeting
    assert recorder.result(status="completed", transcript="hi", cut=False) is None


@pytest.mark.parametrize(
    ("status", "transcript", "cut"),
    [("cancelled", "hi", False), ("completed", None, False), ("completed", "hi", True)],
)
def test_recorder_gives_nothing_for_an_unfinished_greeting(status, transcript, cut):
    recorder = GreetingRecorder("resp_1")
    recorder.add("resp_1", "item_1", b"ab")
    assert recorder.result(status=status, transcript=transcript, cut=cut) is None


def test_recorder_drops_a_greeting_too_long_to_cache():
    recorder = GreetingRecorder("resp_1")
    recorder.add("resp_1", "item_1", b"\xff" * MAX_GREETING_BYTES)
    recorder.add("resp_1", "item_1", b"\xff")
    assert recorder.overflow
    assert recorder.result(status="completed", transcript="hi", cut=False) is None


# ------------------------------------------------------------------ a cache hit


def test_cached_greeting_plays_at_start_before_the_model_is_there():
    """start → the whole greeting at once, a mark after each chunk; nothing asked of
    the model, which is not even connected."""
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    actions = twilio(state, START, now=5)
    assert sent_audio(actions) == GREETING_AUDIO
    kinds = [type(a) for a in actions]
    assert kinds[:4] == [SendAudio, SendMark, SendAudio, SendMark]
    assert len(of(actions, SendMark)) == len(cached().chunks_b64)
    assert not of(actions, CreateResponse)
    assert state.figures().start_to_first_audio_ms == 0
    assert not state.quiet  # the greeting is playing


def test_model_is_told_with_an_assistant_item_and_asked_nothing():
    """session.updated → the greeting's text as an assistant item with our id, then
    the caller audio held meanwhile; no system greeting, no response.create."""
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    twilio(state, START)
    twilio(state, media(1))
    assert state.on_model_connected() == [UpdateSession(config())]
    actions = model(state, updated())
    assert actions[0] == AddMessage("assistant", TEXT, item_id=GREETING_ITEM_ID)
    assert isinstance(actions[1], AppendAudio)
    assert not of(actions, CreateResponse)
    event = validate_client(actions[0].to_json())
    assert event.item.id == GREETING_ITEM_ID
    assert event.item.role == "assistant"
    assert event.item.content[0].type == "output_text"
    # Confirmed again (a later session.updated): the item is not sent twice.
    assert model(state, updated()) == []


def test_cached_greeting_is_saved_once_heard_to_its_last_mark():
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    actions = twilio(state, START)
    model(state, updated())
    names = [a.name for a in of(actions, SendMark)]
    saved = echo(state, *names)
    assert of(saved, SaveTranscript) == [
        SaveTranscript("ai", TEXT, GREETING_ITEM_ID, interrupted=False)
    ]
    assert state.quiet


def test_barge_in_replaces_the_cached_item_by_its_heard_part():
    """Speech 1.34 s into the greeting: clear; the heard part of the text (as the
    marks tell) goes in right after the item, which is deleted (a text item has no
    audio to truncate); no truncate."""
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    actions = twilio(state, START, now=0)
    model(state, updated(), now=50)
    first, second = [a.name for a in of(actions, SendMark)][:2]  # at 40, 1040 ms
    twilio(state, Mark(SID, first, 2), now=140)
    twilio(state, Mark(SID, second, 3), now=1140)
    actions = model(state, SpeechStarted("item_u", 0), now=1440)
    heard = (1040 + 300) * 8  # runs on at the playback rate from the last echo
    kept = heard_text(TEXT, heard, len(GREETING_AUDIO))
    assert kept and kept != TEXT
    assert actions[0] == ClearCaller(SID)
    assert actions[1] == AddMessage(
        "assistant", kept, item_id=CUT_ITEM_ID, previous_item_id=GREETING_ITEM_ID
    )
    assert actions[2] == DeleteItem(GREETING_ITEM_ID)
    assert not of(actions, Truncate)
    assert of(actions, SaveTranscript) == [
        SaveTranscript("ai", kept, GREETING_ITEM_ID, interrupted=True)
    ]
    created_event = validate_client(actions[1].to_json())
    assert created_event.previous_item_id == GREETING_ITEM_ID
    assert json.loads(actions[2].to_json()) == {
        "type": "conversation.item.delete",
        "item_id": GREETING_ITEM_ID,
    }
    assert state.figures().barge_ins == 1


def test_barge_in_before_anything_was_heard_deletes_the_item():
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    twilio(state, START)
    model(state, updated())
    actions = model(state, SpeechStarted("item_u", 0), now=10)
    assert actions[:2] == [ClearCaller(SID), DeleteItem(GREETING_ITEM_ID)]
    assert not of(actions, AddMessage)


def test_barge_in_after_the_greeting_played_cuts_nothing():
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    actions = twilio(state, START)
    model(state, updated())
    echo(state, *[a.name for a in of(actions, SendMark)])
    actions = model(state, SpeechStarted("item_u", 0), now=3000)
    assert actions == []


def test_a_new_model_session_is_told_of_a_greeting_still_playing():
    state = BridgeState(session=config(), greeting="挨拶して", cached_greeting=cached())
    twilio(state, START)
    model(state, updated())
    reconnect = state.on_model_reconnected([])
    assert reconnect[-1] == UpdateSession(config())
    actions = model(state, updated())
    assert AddMessage("assistant", TEXT, item_id=GREETING_ITEM_ID) in actions


# ------------------------------------------------------------------ a cache miss


def _live_greeting(state: BridgeState, *, cut: bool = False) -> list[object]:
    state.on_model_connected()
    model(state, updated())
    assert of(twilio(state, START), CreateResponse) == [CreateResponse("req_1")]
    created(state, "resp_g", "req_1")
    out = audio(state, "resp_g", "item_g", 3200)
    out += audio(state, "resp_g", "item_g", 1000)
    if cut:
        out += model(state, SpeechStarted("item_u", 0), now=10)
    out += model(state, OutputAudioDone("resp_g", "item_g"))
    out += model(state, OutputAudioTranscriptDone("resp_g", "item_g", TEXT))
    status = "cancelled" if cut else "completed"
    out += model(state, ResponseDone("resp_g", status))
    return out


def test_a_live_greeting_comes_back_whole_to_fill_the_cache():
    state = BridgeState(session=config(), greeting="挨拶して", record_greeting=True)
    actions = _live_greeting(state)
    spoken = of(actions, GreetingSpoken)
    assert len(spoken) == 1
    assert spoken[0].text == TEXT
    assert spoken[0].audio == ulaw(3200, 3200) + ulaw(1000, 1000)
    # Only the greeting: a later response is not recorded.
    created(state, "resp_2")
    audio(state, "resp_2", "item_2", 1600)
    model(state, OutputAudioTranscriptDone("resp_2", "item_2", "はい"))
    assert not of(model(state, ResponseDone("resp_2", "completed")), GreetingSpoken)


def test_an_interrupted_live_greeting_is_not_cached():
    state = BridgeState(session=config(), greeting="挨拶して", record_greeting=True)
    assert not of(_live_greeting(state, cut=True), GreetingSpoken)


def test_without_recording_nothing_is_returned():
    state = BridgeState(session=config(), greeting="挨拶して")
    assert not of(_live_greeting(state), GreetingSpoken)
