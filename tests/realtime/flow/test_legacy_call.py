"""Whole calls on the legacy Gather path (F-72): Twilio emulator `<Gather>` with a
scripted caller → our webhook → the fake Responses API → `<Say>` → `<Gather>`."""

from __future__ import annotations

import pytest

from agents.models import Appointment
from calls.legacy import twiml as legacy_twiml
from calls.legacy.writes import writes_idle
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import CallStatus
from realtime.emulators.speech_script import HangsUp, Says, Silent
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
async def legacy_agent(inbound_agent):
    inbound_agent.rollout_percentage = 0  # every call outside the rollout
    inbound_agent.legacy_say_voice = "Google.ja-JP-Neural2-B"
    await inbound_agent.asave()
    return inbound_agent


async def _call(twilio, service, speech):
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        speech_script=speech,
        status_callback=f"{service}/api/twilio/status",
    )
    finished = await handle.wait_finished(timeout=30)
    await writes_idle()  # what the turns save is written behind their replies
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
    return finished, call


async def _events(call, kind):
    return [
        e.payload
        async for e in CallEvent.objects.filter(call=call, type=kind).order_by("id")
    ]


async def _lines(call):
    return [
        (e.speaker, e.text)
        async for e in TranscriptEntry.objects.filter(call=call).order_by(
            "offset_ms", "id"
        )
    ]


async def test_whole_legacy_call(
    service, twilio, fake_responses, legacy_agent, summary_tasks
):
    """Greeting, a question, a booking through the tool, goodbye through end_call:
    transcript, events, usage, cost and latency as a Realtime call has them, and
    the after-call summary (F-76) enqueued once when it ends."""
    finished, call = await _call(
        twilio,
        service,
        [
            Says("営業時間を教えてください", confidence=0.87),
            Says("明日の予約をお願いします"),
            Says("以上です。さようなら"),
        ],
    )
    said = finished.said()
    assert said[0] == "お電話ありがとうございます。組織" + said[0].split("組織")[1]
    assert any("営業時間" in s for s in said), said
    assert any("ご予約を承りました" in s for s in said), said
    assert said[-1] == "お電話ありがとうございました。失礼いたします。"
    assert not finished.errors, finished.errors  # no 13511, no application error
    gathers = finished.entries("gather")
    assert gathers and all(g.detail["language"] == "ja-JP" for g in gathers)
    assert gathers[0].detail["speech_model"] == "phone_call"
    assert {e.detail["voice"] for e in finished.entries("say")} == {
        "Google.ja-JP-Neural2-B"
    }
    fake_responses.assert_complete()
    body = fake_responses.requests[0].body
    assert body["model"] == "gpt-4.1-mini" and body["store"] is False
    assert "受付です" in body["instructions"]
    assert {t["name"] for t in body["tools"]} >= {"schedule_appointment", "end_call"}

    async def completed():
        await call.arefresh_from_db()
        return call.status == CallStatus.COMPLETED

    assert await wait_until(completed), call.status
    assert call.path == CallSession.Path.LEGACY
    lines = await _lines(call)
    assert ("customer", "営業時間を教えてください") in lines
    assert lines[0][0] == "ai" and lines[-1] == (
        "ai",
        "お電話ありがとうございました。失礼いたします。",
    )
    assert await Appointment.objects.filter(call=call).aexists()
    tools = await _events(call, "tool-call")
    assert [t["name"] for t in tools] == ["schedule_appointment", "end_call"]
    assert all(t["ok"] for t in tools)
    turns = await _events(call, "legacy-turn")
    assert len(turns) == 3 and all(t["own_ms"] >= 0 for t in turns)
    speech = await _events(call, "legacy-speech")
    assert speech[0]["confidence"] == "0.87"
    assert len(call.turn_latencies_ms) == 3
    assert call.input_text_tokens > 0 and call.output_text_tokens > 0
    assert call.cost_usd > 0
    assert call.first_audio_ms is not None
    assert (await _events(call, "path"))[0] == {
        "path": "legacy",
        "why": "outside-rollout",
    }

    async def summary_enqueued() -> bool:
        return bool(summary_tasks)

    assert await wait_until(summary_enqueued)
    assert summary_tasks == [{"call_id": call.pk, "announce": True}]


@pytest.mark.parametrize(
    ("silence", "empty_result"),
    [
        (Says(""), True),  # SpeechResult present but empty
        (Silent(), True),  # actionOnEmptyResult: the action without SpeechResult
        (Silent(), False),  # Twilio goes on to our <Redirect event=silence>
    ],
)
async def test_nothing_heard_asks_again_then_says_goodbye(
    service, twilio, fake_responses, legacy_agent, silence, empty_result
):
    legacy_agent.legacy_action_on_empty_result = empty_result
    await legacy_agent.asave()
    finished, call = await _call(
        twilio, service, [silence, Says("もしもし"), silence, silence, silence]
    )
    said = finished.said()
    assert said.count(legacy_twiml.NOT_HEARD_LINE) == 3, said
    assert said[-1] == legacy_twiml.NO_ONE_THERE_LINE
    assert not finished.errors
    callbacks = [c for c in finished.callbacks if c.kind == "action"]
    if empty_result and isinstance(silence, Silent):
        assert "SpeechResult" not in callbacks[0].params
    if not empty_result:
        assert any("event=silence" in c.url for c in finished.callbacks)
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "legacy-no-speech"
    misses = await _events(call, "legacy-no-speech")
    assert [m["in_a_row"] for m in misses] == [1, 1, 2, 3]


async def test_slow_text_model_is_cut_short_and_the_caller_hears_why(
    service, twilio, fake_responses, legacy_agent, flow_settings
):
    """The model outlives the turn's time limit twice: the caller is asked again,
    then the profile's model-failure path (here: an apology and hang-up)."""
    flow_settings.LEGACY_TEXT_TIMEOUT_S = 0.4
    fake_responses.delay_s = 1.5
    legacy_agent.on_model_failure = "hang-up"
    await legacy_agent.asave()
    finished, call = await _call(
        twilio, service, [Says("営業時間は？"), Says("営業時間は？"), HangsUp()]
    )
    said = finished.said()
    assert legacy_twiml.SLOW_MODEL_LINE in said, said
    assert said[-1].startswith("申し訳ございません。ただいまシステムに問題")
    assert not finished.errors
    assert all(c.status_code == 200 for c in finished.callbacks if c.kind == "action")
    await call.arefresh_from_db()
    assert call.status == CallStatus.FAILED
    failures = await _events(call, "legacy-model-failed")
    assert [f["kind"] for f in failures] == ["timeout", "timeout"]


async def test_text_model_error_then_recovery(
    service, twilio, fake_responses, legacy_agent
):
    fake_responses.fail_next(500)
    finished, call = await _call(
        twilio, service, [Says("営業時間は？"), Says("営業時間は？"), HangsUp()]
    )
    said = finished.said()
    assert said[1] == legacy_twiml.MODEL_ERROR_LINE
    assert "「営業時間は？」ですね" in said[2]
    assert not finished.errors
    failures = await _events(call, "legacy-model-failed")
    assert failures[0]["kind"] == "error" and "500" in failures[0]["detail"]
    await call.arefresh_from_db()
    assert call.legacy_misses == 0  # the good turn reset the count


async def test_malformed_tool_call_is_not_run(
    service, twilio, fake_responses, legacy_agent
):
    fake_responses.malformed_next()
    finished, call = await _call(twilio, service, [Says("もしもし"), HangsUp()])
    assert finished.said()[1] == legacy_twiml.MODEL_ERROR_LINE
    assert not await CallEvent.objects.filter(call=call, type="tool-call").aexists()
    (failure,) = await _events(call, "legacy-model-failed")
    assert failure["kind"] == "malformed"


async def test_a_voice_not_for_japanese_never_reaches_twilio(
    service, twilio, fake_responses, legacy_agent
):
    """Put past the settings page (straight into the database), an English voice
    is replaced by the default Japanese one: Twilio would skip the <Say> (13511)."""
    await (
        type(legacy_agent)
        .objects.filter(pk=legacy_agent.pk)
        .aupdate(legacy_say_voice="Polly.Joanna")
    )
    finished, _call_row = await _call(twilio, service, [HangsUp()])
    assert finished.said(), "the greeting was not heard"
    assert {e.detail["voice"] for e in finished.entries("say")} == {"Polly.Mizuki"}
    assert not finished.errors


async def test_handoff_goes_into_the_same_conference(
    service, controlled_twilio, fake_responses, legacy_agent
):
    from handoff.twiml import conference_name

    handle = await controlled_twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        speech_script=[Says("担当者と話したいです")],
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)

    async def human():
        await call.arefresh_from_db()
        return call.status == CallStatus.HUMAN_CONNECTED

    assert await wait_until(human, within_s=15), call.status
    await writes_idle()
    room = controlled_twilio.conference(conference_name(call.pk))
    assert len(room.participants) == 2
    said = handle.call.said()
    assert said[-1] == legacy_agent.handoff_farewell
    assert call.handoff_trigger == "ai-tool"
    await handle.hang_up()


async def test_back_from_the_human_the_ai_goes_on_with_a_note(
    service, twilio, fake_responses, legacy_agent
):
    """F-34 on the legacy path: the human leaves, the profile sends the caller back
    to the AI; the AI is told what happened (a developer note) and talks again."""
    from handoff.services import BACK_FROM_AGENT_NOTE

    legacy_agent.return_to_ai_after_agent = True
    await legacy_agent.asave()
    handle = await twilio.inbound_call(
        from_=CALLER_NUMBER,
        to=INBOUND_NUMBER,
        voice_url=f"{service}/api/twilio/voice/incoming",
        speech_script=[Says("担当者と話したいです"), Says("もう大丈夫です"), HangsUp()],
        status_callback=f"{service}/api/twilio/status",
    )
    call = await CallSession.objects.aget(twilio_call_sid=handle.sid)

    async def human():
        await call.arefresh_from_db()
        return call.status == CallStatus.HUMAN_CONNECTED

    assert await wait_until(human, within_s=15), call.status
    await twilio.hang_up(call.handoff_agent_call_sid)
    finished = await handle.wait_finished(timeout=30)
    await writes_idle()
    said = finished.said()
    assert "お待たせいたしました。引き続きご用件を伺います。" in said, said
    assert "「もう大丈夫です」ですね" in said[-1], said
    assert not finished.errors
    resumes = [c for c in finished.callbacks if "event=resume" in c.url]
    assert len(resumes) == 1 and resumes[0].status_code == 200
    notes = [
        item
        for r in fake_responses.requests
        for item in r.body.get("input", [])
        if item.get("role") == "developer"
    ]
    assert any(n["content"] == BACK_FROM_AGENT_NOTE for n in notes)
    await call.arefresh_from_db()
    assert call.ai_resume_note == ""
    assert (await _events(call, "back-to-ai"))[0]["reason"] == "agent-left"
