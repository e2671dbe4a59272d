"""`BridgeState.quiet`: when a call's stream may be handed over (F-69 drain)."""

from __future__ import annotations

import dataclasses

from realtime.protocol.bridge_state import BridgeState
from realtime.protocol.openai_events import (
    FunctionCallArgumentsDone,
    InputAudioCommitted,
    InputTranscriptionCompleted,
    InputTranscriptionFailed,
    OutputAudioDone,
    OutputAudioTranscriptDone,
    SpeechStarted,
    SpeechStopped,
    Transcription,
)
from tests.realtime.protocol.test_bridge_state import (
    FRAME,
    START,
    audio,
    config,
    created,
    done,
    echo,
    mark_names,
    media,
    model,
    ready,
    twilio,
    updated,
)


def _spoken(state: BridgeState, rid: str = "r1", iid: str = "i1") -> list[str]:
    """One AI reply of 3 frames, done; return the marks sent (none echoed yet)."""
    created(state, rid)
    marks = mark_names(audio(state, rid, iid, 3 * FRAME))
    model(state, OutputAudioTranscriptDone(rid, iid, "ご用件を伺います。"))
    marks += mark_names(model(state, OutputAudioDone(rid, iid)))
    marks += mark_names(done(state, rid))
    return marks


def test_a_call_between_turns_is_quiet():
    assert ready().quiet


def test_not_quiet_before_the_stream_has_started():
    state = BridgeState(session=config())
    model(state, updated())
    assert not state.quiet
    twilio(state, START)
    assert state.quiet


def test_not_quiet_until_the_greeting_has_been_heard():
    """The greeting is queued, then active, then playing: quiet only once its last
    mark came back."""
    state = ready(greeting="Greet.")
    assert not state.quiet  # asked for, not yet created
    marks = _spoken(state, "r1", "i1")
    assert marks
    assert not state.quiet  # sent to Twilio, not yet played
    echo(state, *marks[:-1])
    assert not state.quiet
    echo(state, marks[-1])
    assert state.quiet


def test_mid_sentence_is_not_quiet_until_the_last_mark_echoes():
    """Response done (all audio sent) is not enough: the caller is still hearing it."""
    state = ready()
    created(state, "r1")
    assert not state.quiet  # the model is answering
    marks = mark_names(audio(state, "r1", "i1", 5 * FRAME))
    assert not state.quiet
    model(state, OutputAudioTranscriptDone("r1", "i1", "はい。"))
    marks += mark_names(model(state, OutputAudioDone("r1", "i1")))
    done(state, "r1")
    assert not state.quiet
    echo(state, *marks)
    assert state.quiet


def test_an_interrupted_reply_is_quiet_once_cut():
    """A barge-in cuts the item (nothing more will play); quiet after the caller's
    turn is answered."""
    state = ready()
    created(state, "r1")
    audio(state, "r1", "i1", 5 * FRAME)
    model(state, SpeechStarted("i2", 100))
    assert not state.quiet  # the caller speaks
    done(state, "r1")
    model(state, SpeechStopped("i2", 900), now=900)
    assert not state.quiet  # the server's answer is expected
    created(state, "r2")
    done(state, "r2")
    assert state.quiet


def test_a_finished_turn_the_server_never_answers_is_quiet_after_the_grace():
    state = ready()
    model(state, SpeechStarted("i2", 0))
    model(state, SpeechStopped("i2", 500), now=500)
    assert not state.quiet
    twilio(state, media(1), now=2_600)  # past AUTO_RESPONSE_GRACE_MS
    assert state.quiet


def test_a_tool_call_awaiting_its_result_is_not_quiet():
    state = ready()
    created(state, "r1")
    actions = model(
        state, FunctionCallArgumentsDone("r1", "fc1", "call1", "{}", name="lookup")
    )
    assert actions
    done(state, "r1")
    assert not state.quiet  # the tool runs
    state.on_tool_result("call1", '{"ok": true}')
    assert not state.quiet  # its follow-up is asked for
    marks = _spoken(state, "r2", "i2")
    echo(state, *marks)
    assert state.quiet


def test_a_caller_turn_waiting_for_its_transcript_is_not_quiet():
    """With transcription on, a committed turn is not quiet until its transcript (or
    its failure) is in, so the drain never leaves a caller line unsaved."""
    session = dataclasses.replace(config(), transcription=Transcription())
    state = BridgeState(session=session)
    state.on_model_connected()
    model(state, updated())
    twilio(state, START)
    model(state, InputAudioCommitted("u1"))
    model(state, InputAudioCommitted("u2"))
    assert not state.quiet
    model(state, InputTranscriptionCompleted("u1", "もしもし"))
    assert not state.quiet
    model(state, InputTranscriptionFailed("u2", "x", "failed"))
    assert state.quiet


def test_without_transcription_committed_turns_do_not_block():
    state = ready()
    model(state, InputAudioCommitted("u1"))
    assert state.quiet
