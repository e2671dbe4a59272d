"""A supervisor's pause and hand-back in the bridge state machine (F-75)."""

from __future__ import annotations

import json
from typing import Any

from realtime.protocol.bridge_state import (
    AddMessage,
    AppendAudio,
    BridgeState,
    CancelResponse,
    ClearCaller,
    CreateResponse,
    SaveTranscript,
    SendAudio,
    Truncate,
    UpdateSession,
)
from realtime.protocol.openai_events import (
    InputTranscriptionCompleted,
    SemanticVad,
    ServerVad,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
)
from realtime.protocol.supervision_state import (
    MAX_NOTE_LINES,
    Hold,
    paused_session,
)
from tests.realtime.protocol.test_bridge_state import (
    SID,
    START,
    audio,
    created,
    done,
    echo,
    media,
    model,
    of,
    ready,
    twilio,
    updated,
)
from tests.realtime.protocol.test_openai_events import validate_client


def _turn_detection(action: UpdateSession) -> dict[str, Any]:
    text = action.to_json()
    validate_client(text)
    sent = json.loads(text)
    return sent["session"]["audio"]["input"]["turn_detection"]


def _playing(state: BridgeState) -> None:
    """An AI reply of 600 ms sent, the first 400 ms heard."""
    created(state, "resp_1")
    audio(state, "resp_1", "item_1", 3200)
    audio(state, "resp_1", "item_1", 1600)
    echo(state, "a1")


def _caller_line(state: BridgeState, item: str, text: str) -> list[Any]:
    return model(state, InputTranscriptionCompleted(item, text))


# ------------------------------------------------------------------ pause


def test_pause_cancels_clears_truncates_and_turns_answers_off():
    state = ready()
    _playing(state)
    actions = state.pause("barge", by_name="佐藤")
    assert actions[:3] == [
        ClearCaller(SID),
        Truncate("item_1", 400),
        CancelResponse("resp_1"),
    ]
    (update,) = of(actions, UpdateSession)
    td = _turn_detection(update)
    assert td["type"] == "server_vad"
    assert td["create_response"] is False
    assert td["interrupt_response"] is False
    assert td["idle_timeout_ms"] is None
    assert state.paused


def test_pause_clears_the_caller_even_with_nothing_playing():
    state = ready()
    actions = state.pause("take-over")
    assert actions[0] == ClearCaller(SID)
    assert not of(actions, CancelResponse)


def test_paused_audio_of_the_cancelled_response_never_reaches_the_caller():
    state = ready()
    _playing(state)
    state.pause("barge")
    assert audio(state, "resp_1", "item_1", 1600) == []


def test_paused_caller_speech_does_not_clear_and_audio_still_goes_to_the_model():
    state = ready()
    state.pause("take-over")
    model(state, updated(create=False, interrupt=False))
    assert model(state, SpeechStarted("item_u", 0)) == []
    assert twilio(state, media(1)) == [AppendAudio(media(1).payload_b64)]
    assert model(state, SpeechStopped("item_u", 500), 500) == []


def test_a_response_begun_before_the_pause_took_effect_is_cancelled():
    state = ready()
    state.pause("take-over")
    # The server answered the caller before it applied the paused session.
    assert created(state, "resp_9") == [CancelResponse("resp_9")]
    assert audio(state, "resp_9", "item_9", 320) == []


def test_instruct_while_paused_adds_context_and_asks_for_nothing():
    state = ready()
    state.pause("take-over")
    actions = state.instruct("Offer the discount.")
    assert actions == [AddMessage("system", "Offer the discount.")]
    assert not of(done(state, "resp_x"), CreateResponse)


def test_queued_requests_are_dropped_by_the_pause():
    state = ready()
    created(state, "resp_1")
    state.instruct("Say the price.")  # waits for resp_1
    state.pause("barge")
    assert not of(done(state, "resp_1"), CreateResponse)


def test_caller_lines_are_saved_while_paused():
    state = ready()
    state.pause("take-over")
    assert _caller_line(state, "item_c", " 住所を変えたい ") == [
        SaveTranscript("customer", "住所を変えたい", "item_c")
    ]


def test_supervisor_lines_are_saved_as_agent():
    state = ready()
    state.pause("take-over", by_name="佐藤")
    assert state.supervisor_said("承知しました", "sv_1") == [
        SaveTranscript("agent", "承知しました", "sv_1")
    ]
    assert state.supervisor_said("  ", "sv_2") == []


def test_pausing_twice_only_changes_the_mode():
    state = ready()
    state.pause("barge")
    assert state.pause("take-over") == []
    (note,) = of(state.resume(), AddMessage)
    assert "通話を代わり" in note.text


def test_the_stream_is_not_quiet_while_a_supervisor_holds_it():
    state = ready()
    assert state.quiet
    state.pause("barge")
    assert not state.quiet


# ------------------------------------------------------------------ resume


def test_resume_sends_the_note_turns_answers_on_and_asks_for_a_response():
    state = ready()
    state.pause("take-over", by_name="佐藤")
    _caller_line(state, "item_c", "住所を変えたい")
    state.supervisor_said("新しいご住所をお願いします", "sv_1")
    actions = state.resume()
    update, note, create = actions
    assert isinstance(update, UpdateSession)
    td = _turn_detection(update)
    assert td["create_response"] is True and td["interrupt_response"] is True
    assert isinstance(note, AddMessage) and note.role == "system"
    assert "お客様: 住所を変えたい" in note.text
    assert "オペレーター（佐藤）: 新しいご住所をお願いします" in note.text
    assert note.text.index("お客様:") < note.text.index("オペレーター（佐藤）:")
    assert isinstance(create, CreateResponse)
    assert not state.paused


def test_resume_waits_for_the_cancelled_response_to_end():
    state = ready()
    _playing(state)
    state.pause("barge")
    actions = state.resume()
    assert not of(actions, CreateResponse)
    assert of(done(state, "resp_1"), CreateResponse)


def test_resume_without_a_pause_does_nothing():
    assert ready().resume() == []


def test_resume_after_speech_lets_the_servers_answer_serve():
    """The caller spoke as the AI came back: the server answers; no second reply."""
    state = ready()
    state.pause("barge")
    model(state, SpeechStarted("item_u", 0))
    state.resume()
    model(state, updated())
    model(state, SpeechStopped("item_u", 500), 500)
    assert created(state, "resp_srv") == []
    assert not of(done(state, "resp_srv"), CreateResponse)


def test_the_caller_clears_the_ai_again_after_the_resume():
    state = ready()
    state.pause("barge")
    state.resume()
    model(state, updated())
    created(state, "resp_2")
    audio(state, "resp_2", "item_2", 320)
    assert ClearCaller(SID) in model(state, SpeechStarted("item_u", 0))


def test_a_reconnect_while_paused_stays_paused():
    state = ready()
    state.pause("take-over")
    actions = state.on_model_reconnected([("customer", "もしもし")])
    (update,) = of(actions, UpdateSession)
    assert _turn_detection(update)["create_response"] is False
    assert state.paused
    model(state, updated(create=False, interrupt=False))
    assert not of(twilio(state, media(1)), CreateResponse)


def test_tools_added_while_paused_keep_the_pause():
    from realtime.protocol.openai_events import FunctionTool

    state = ready()
    state.pause("barge")
    (update,) = state.add_tools([FunctionTool("lookup", "Look up", {"type": "object"})])
    assert _turn_detection(update)["create_response"] is False


def test_a_greeting_not_yet_spoken_gives_way_to_the_hand_back():
    """Taken over before the AI spoke: after the hand-back, one response (with the
    note) speaks first, not the greeting and then another."""
    state = BridgeState(session=SessionConfig(), greeting="Greet.")
    state.on_model_connected()
    state.pause("take-over")
    model(state, updated(create=False, interrupt=False))
    assert not of(twilio(state, START), CreateResponse)
    actions = state.resume()
    (create,) = of(actions, CreateResponse)
    assert [m.text for m in of(actions, AddMessage) if m.text == "Greet."] == []
    created(state, "resp_1", create.request_id)
    assert not of(done(state, "resp_1"), CreateResponse)


def test_goodbye_still_goes_while_paused():
    state = ready()
    state.pause("take-over")
    actions = state.say_and_hang_up("失礼いたします")
    assert of(actions, CreateResponse)
    assert created(state, "resp_bye") == []  # not cancelled
    assert of(audio(state, "resp_bye", "item_bye", 320), SendAudio)


# ------------------------------------------------------------------ pure parts


def test_paused_session_of_semantic_vad_and_of_none():
    semantic = SessionConfig(turn_detection=SemanticVad(eagerness="low"))
    td = paused_session(semantic).turn_detection
    assert isinstance(td, SemanticVad)
    assert (td.create_response, td.interrupt_response, td.eagerness) == (
        False,
        False,
        "low",
    )
    off = SessionConfig(turn_detection=None)
    assert paused_session(off) is off
    vad = SessionConfig(turn_detection=ServerVad(idle_timeout_ms=6000))
    assert paused_session(vad).turn_detection == ServerVad(
        create_response=False, interrupt_response=False, idle_timeout_ms=None
    )


def test_note_without_lines_says_nothing_was_transcribed():
    note = Hold("barge").note()
    assert "オペレーターが通話に割り込み" in note
    assert "文字起こしされていません" in note


def test_note_keeps_the_latest_lines():
    hold = Hold("take-over", "佐藤")
    for n in range(MAX_NOTE_LINES + 5):
        hold.caller_said(f"line {n}")
    note = hold.note()
    assert "line 4" not in note.split("\n")
    assert f"お客様: line {MAX_NOTE_LINES + 4}" in note
    assert "最初の5行は省略" in note
