"""The legacy Gather path (F-72) without sockets: the split, the TwiML, the webhook's
bad input (missing or empty SpeechResult, unsigned, unknown call, a crash), the
outbound answer, the live-call cap and the per-path figures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from twilio.request_validator import RequestValidator

from calls.inbound import in_rollout, live_ai_call_count
from calls.legacy import twiml as legacy_twiml
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.path_figures import path_figures
from calls.status import CallStatus
from calls.telephony import call_outbound_answered_twiml
from realtime.emulators import twiml as emulated
from tests.agents.factories import AgentProfileFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db
TOKEN = "test-auth-token"
BASE = "https://cc.example.com"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_VALIDATE_SIGNATURES = True
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # never the real API
    return settings


def _post(client, path, params, *, sign=True):
    headers = {}
    if sign:
        headers["HTTP_X_TWILIO_SIGNATURE"] = RequestValidator(TOKEN).compute_signature(
            BASE + path, params
        )
    return client.post(path, params, **headers)


@pytest.fixture
def legacy_call(db):
    return CallSessionFactory(
        path=CallSession.Path.LEGACY, status=CallStatus.AI_RESPONDING
    )


def test_split_is_deterministic_and_follows_the_percentage():
    sids = [f"CA{n:032x}" for n in range(4000)]
    inside = [sid for sid in sids if in_rollout(call_sid=sid, percentage=30)]
    assert 0.27 < len(inside) / len(sids) < 0.33
    assert inside == [sid for sid in sids if in_rollout(call_sid=sid, percentage=30)]
    assert not any(in_rollout(call_sid=sid, percentage=0) for sid in sids[:200])
    assert all(in_rollout(call_sid=sid, percentage=100) for sid in sids[:200])
    # Raising the share keeps every call that was already inside.
    wider = {sid for sid in sids if in_rollout(call_sid=sid, percentage=60)}
    assert set(inside) <= wider


def test_gather_twiml_carries_the_profile_settings():
    agent = AgentProfileFactory.build(
        legacy_speech_model="googlev2_telephony",
        legacy_timeout_s=7,
        legacy_speech_timeout="2",
        legacy_hints="予約, キャンセル ,営業時間",
        legacy_action_on_empty_result=False,
        legacy_say_voice="Polly.Kazuha-Neural",
    )
    xml = legacy_twiml.say_and_gather(
        agent=agent,
        text="ご用件をどうぞ。",
        action_url=BASE + "/a",
        silence_url=BASE + "/s",
    )
    gather, redirect = emulated.parse_twiml(
        xml
    )  # Twilio's rules, as the emulator has them
    assert isinstance(gather, emulated.Gather) and not gather.warnings
    assert gather.input == frozenset({"speech"})
    assert (gather.language, gather.speech_model) == ("ja-JP", "googlev2_telephony")
    assert (gather.timeout, gather.speech_timeout) == (7, "2")
    assert gather.hints == "予約,キャンセル,営業時間"
    assert gather.action_on_empty_result is False
    (say,) = gather.nested
    assert (say.voice, say.language, say.text) == (
        "Polly.Kazuha-Neural",
        "ja-JP",
        "ご用件をどうぞ。",
    )
    assert isinstance(redirect, emulated.Redirect) and redirect.url == BASE + "/s"


def test_a_voice_that_is_not_japanese_falls_back_to_the_default():
    agent = AgentProfileFactory.build(legacy_say_voice="Polly.Joanna")
    assert legacy_twiml.say_voice(agent) == legacy_twiml.DEFAULT_VOICE
    assert emulated_voice_error("Polly.Joanna") is not None
    assert emulated_voice_error(legacy_twiml.DEFAULT_VOICE) is None


def emulated_voice_error(voice):
    from realtime.emulators.twiml_gather import say_voice_error

    return say_voice_error(voice, "ja-JP")


@pytest.mark.parametrize("params", [{}, {"SpeechResult": ""}, {"SpeechResult": "  "}])
def test_missing_or_empty_speech_asks_again_without_the_model(
    client, legacy_call, params
):
    path = f"/api/twilio/legacy/{legacy_call.pk}/turn"
    response = _post(client, path, {"CallSid": legacy_call.twilio_call_sid, **params})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    body = response.content.decode()
    assert legacy_twiml.NOT_HEARD_LINE in body and "<Gather" in body
    event = CallEvent.objects.get(call=legacy_call, type="legacy-no-speech")
    assert event.payload == {"event": "gather", "in_a_row": 1}
    assert TranscriptEntry.objects.filter(
        call=legacy_call, speaker="ai", text=legacy_twiml.NOT_HEARD_LINE
    ).exists()


def test_unsigned_turn_is_refused_and_changes_nothing(client, legacy_call):
    path = f"/api/twilio/legacy/{legacy_call.pk}/turn"
    response = _post(client, path, {"SpeechResult": "はい"}, sign=False)
    assert response.status_code == 403
    assert not TranscriptEntry.objects.filter(call=legacy_call).exists()


def test_unknown_call_and_event(client, legacy_call):
    assert (
        _post(client, "/api/twilio/legacy/999999/turn", {"X": "1"}).status_code == 404
    )
    path = f"/api/twilio/legacy/{legacy_call.pk}/turn?event=bogus"
    assert _post(client, path, {"X": "1"}).status_code == 400


def test_a_crash_in_the_turn_still_answers_twiml(client, legacy_call, monkeypatch):
    async def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("calls.legacy.webhooks.legacy_turn_twiml", broken)
    path = f"/api/twilio/legacy/{legacy_call.pk}/turn"
    response = _post(client, path, {"SpeechResult": "はい"})
    assert response.status_code == 200
    body = response.content.decode()
    assert legacy_twiml.MODEL_ERROR_LINE in body and "<Gather" in body
    emulated.parse_twiml(body)


def test_turn_of_an_ended_call_hangs_up(client, legacy_call):
    CallSession.objects.filter(pk=legacy_call.pk).update(status=CallStatus.COMPLETED)
    path = f"/api/twilio/legacy/{legacy_call.pk}/turn"
    body = _post(client, path, {"SpeechResult": "はい"}).content.decode()
    assert "<Hangup />" in body and "<Gather" not in body


def test_outbound_answer_follows_the_split():
    call = CallSessionFactory(
        direction=CallSession.Direction.OUTBOUND,
        status=CallStatus.RINGING,
        agent__rollout_percentage=0,
        agent__greeting_template="山田様、お世話になっております。",
    )
    body = call_outbound_answered_twiml(call_id=call.pk, answered_by="human")
    assert "<Gather" in body and "お世話になっております" in body
    call.refresh_from_db()
    assert call.path == CallSession.Path.LEGACY
    assert call.status == CallStatus.AI_RESPONDING


def test_legacy_calls_do_not_count_against_the_bridge_cap(legacy_call):
    CallSessionFactory(status=CallStatus.AI_RESPONDING)
    assert live_ai_call_count() == 1


def test_path_figures_side_by_side():
    agent = AgentProfileFactory()
    CallSessionFactory(
        agent=agent,
        organization=agent.organization,
        status=CallStatus.COMPLETED,
        turn_latencies_ms=[800, 900],
        cost_usd=Decimal("0.20"),
    )
    CallSessionFactory(
        agent=agent,
        organization=agent.organization,
        path=CallSession.Path.LEGACY,
        status=CallStatus.COMPLETED,
        turn_latencies_ms=[1200, 1400, 3000],
        cost_usd=Decimal("0.01"),
    )
    CallSessionFactory(
        agent=agent,
        organization=agent.organization,
        path=CallSession.Path.LEGACY,
        status=CallStatus.FAILED,
        handoff_trigger="ai-tool",
        cost_usd=Decimal("0.03"),
    )
    realtime, legacy = path_figures(agent.calls.all())
    assert (realtime.path, realtime.calls, realtime.latency_mean_ms) == (
        "realtime",
        1,
        850,
    )
    assert (legacy.path, legacy.calls, legacy.turns) == ("legacy", 2, 3)
    assert legacy.latency_p95_ms == 3000
    assert legacy.completion_pct == 50.0
    assert legacy.cost_per_call_usd == Decimal("0.0200")


@pytest.mark.django_db(transaction=True)
async def test_a_model_that_only_calls_tools_still_says_something(monkeypatch):
    """Rounds run out with tool calls and no text: the caller hears a line, and
    the turn is saved with its tool events."""
    import time as clock

    from asgiref.sync import sync_to_async

    from calls.legacy import turns
    from calls.legacy.text_model import ModelReply, TextUsage, ToolCall
    from calls.legacy.writes import writes_idle

    call = await sync_to_async(CallSessionFactory)(
        path=CallSession.Path.LEGACY, status=CallStatus.AI_RESPONDING
    )
    asked: list[int] = []

    async def tool_happy_model(**kwargs):
        asked.append(1)
        return ModelReply(
            text="",
            tool_calls=(ToolCall(f"call_{len(asked)}", "get_customer_info", "{}"),),
            usage=TextUsage(10, 0, 5),
            ms=1,
            call_items=(
                {
                    "type": "function_call",
                    "call_id": f"call_{len(asked)}",
                    "name": "get_customer_info",
                    "arguments": "{}",
                },
            ),
        )

    monkeypatch.setattr(turns, "text_respond", tool_happy_model)
    reply = await turns.legacy_turn_twiml(
        call_id=call.pk,
        event="gather",
        speech="私の予約は？",
        confidence="0.9",
        received=clock.perf_counter(),
    )
    await writes_idle()
    assert legacy_twiml.NOTHING_SAID_LINE in reply and "<Gather" in reply
    assert len(asked) == turns.MAX_ROUNDS
    tools = [
        e.payload["name"]
        async for e in CallEvent.objects.filter(call=call, type="tool-call")
    ]
    assert tools == ["get_customer_info"] * turns.MAX_ROUNDS
    await call.arefresh_from_db()
    assert call.input_text_tokens == 10 * turns.MAX_ROUNDS
    assert len(call.turn_latencies_ms) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tool", ["schedule_appointment", "end_call"])
async def test_model_failing_after_a_tool_did_its_work(monkeypatch, tool):
    """The booking was made (or the call ended) and then the model timed out: the
    caller is not asked to say it again (no second booking), or hears the goodbye."""
    import json
    import time as clock

    from asgiref.sync import sync_to_async

    from agents.models import Appointment
    from calls.legacy import turns
    from calls.legacy.text_model import ModelReply, TextModelError, TextUsage, ToolCall
    from calls.legacy.writes import writes_idle

    call = await sync_to_async(CallSessionFactory)(
        path=CallSession.Path.LEGACY, status=CallStatus.AI_RESPONDING
    )
    arguments = json.dumps(
        {"date": "2099-01-02", "time": "10:00", "name": "山田"}
        if tool == "schedule_appointment"
        else {"reason": "done"}
    )
    replies = iter(
        [
            ModelReply(
                text="",
                tool_calls=(ToolCall("call_1", tool, arguments),),
                usage=TextUsage(10, 0, 5),
                ms=1,
                call_items=(
                    {
                        "type": "function_call",
                        "call_id": "call_1",
                        "name": tool,
                        "arguments": arguments,
                    },
                ),
            )
        ]
    )

    async def then_too_slow(**kwargs):
        reply = next(replies, None)
        if reply is None:
            raise TextModelError("timeout", "no answer within 0.1 s")
        return reply

    monkeypatch.setattr(turns, "text_respond", then_too_slow)
    reply = await turns.legacy_turn_twiml(
        call_id=call.pk,
        event="gather",
        speech="はい",
        confidence="0.9",
        received=clock.perf_counter(),
    )
    await writes_idle()
    await call.arefresh_from_db()
    if tool == "end_call":
        assert turns.GOODBYE_LINE in reply and "<Hangup />" in reply
        assert call.status == CallStatus.COMPLETED
    else:
        assert legacy_twiml.NOTHING_SAID_LINE in reply and "<Gather" in reply
        assert legacy_twiml.SLOW_MODEL_LINE not in reply
        assert await Appointment.objects.filter(call=call).acount() == 1
