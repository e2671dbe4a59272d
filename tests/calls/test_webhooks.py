from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from calls.models import CallEvent, CallSession, Recording
from calls.status import CallStatus
from tests.agents.factories import PhoneNumberFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db
TOKEN = "test-auth-token"
BASE = "https://cc.example.com"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE
    settings.TWILIO_VALIDATE_SIGNATURES = True
    settings.USE_OPENAI_REALTIME = True
    settings.MAX_LIVE_CALLS = 5
    return settings


def signed_post(client, path, params, *, token=TOKEN, signature=None):
    if signature is None:
        signature = RequestValidator(token).compute_signature(BASE + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def voice_params(to="+815012340001", call_sid="CA" + "1" * 32, from_="090-1111-2222"):
    return {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": to,
        "CallStatus": "ringing",
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
    }


def test_inbound_call_creates_session_and_answers_with_stream(client):
    number = PhoneNumberFactory(number="+815012340001")
    response = signed_post(client, "/api/twilio/voice/incoming", voice_params())
    assert response.status_code == 200
    call = CallSession.objects.get()
    body = response.content.decode()
    assert f'url="wss://cc.example.com/api/twilio/media-stream/{call.pk}"' in body
    assert f'<Parameter name="stream_token" value="{call.stream_token}"' in body
    assert f'<Parameter name="call_id" value="{call.pk}"' in body
    assert call.agent == number.agent and call.organization == number.organization
    assert call.from_number == "+819011112222"
    assert call.status == CallStatus.RINGING
    assert CallEvent.objects.filter(call=call, type="webhook").exists()


def test_retried_webhook_returns_same_stream_without_new_call(client):
    PhoneNumberFactory(number="+815012340001")
    first = signed_post(client, "/api/twilio/voice/incoming", voice_params())
    second = signed_post(client, "/api/twilio/voice/incoming", voice_params())
    assert first.content == second.content
    assert CallSession.objects.count() == 1


def test_unknown_number_gets_polite_message_and_hangup(client):
    response = signed_post(
        client, "/api/twilio/voice/incoming", voice_params(to="+815099999999")
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert '<Say language="ja-JP"' in body and "<Hangup />" in body
    assert not CallSession.objects.exists()


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "forged",
        RequestValidator("other-token").compute_signature(
            BASE + "/api/twilio/voice/incoming", voice_params()
        ),
    ],
)
def test_forged_or_unsigned_webhook_is_refused_and_changes_nothing(client, signature):
    PhoneNumberFactory(number="+815012340001")
    response = signed_post(
        client, "/api/twilio/voice/incoming", voice_params(), signature=signature
    )
    assert response.status_code == 403
    assert not CallSession.objects.exists()


def test_tampered_parameters_are_refused(client):
    PhoneNumberFactory(number="+815012340001")
    params = voice_params()
    signature = RequestValidator(TOKEN).compute_signature(
        BASE + "/api/twilio/voice/incoming", params
    )
    params["From"] = "+819000000000"
    assert (
        signed_post(
            client, "/api/twilio/voice/incoming", params, signature=signature
        ).status_code
        == 403
    )


def test_signature_checks_only_off_when_setting_says_so(client, settings):
    PhoneNumberFactory(number="+815012340001")
    settings.TWILIO_VALIDATE_SIGNATURES = False
    response = client.post("/api/twilio/voice/incoming", voice_params())
    assert response.status_code == 200


def test_missing_parameters_are_a_clear_400(client):
    response = signed_post(client, "/api/twilio/voice/incoming", {"CallSid": "CA1"})
    assert response.status_code == 400
    assert b"From" in response.content and b"To" in response.content


def test_realtime_off_for_the_profile_takes_the_legacy_path(client):
    number = PhoneNumberFactory(number="+815012340001")
    number.agent.realtime_enabled = False
    number.agent.save()
    body = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert '<Gather action="https://' in body and 'input="speech"' in body
    assert "<Connect>" not in body and "<Dial" not in body
    call = CallSession.objects.get()
    assert call.status == CallStatus.AI_RESPONDING
    assert call.path == CallSession.Path.LEGACY


def test_ai_switched_off_hands_to_the_agent_number(client, settings):
    settings.USE_OPENAI_REALTIME = False
    PhoneNumberFactory(number="+815012340001")
    body = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert "<Dial" in body and "+818070239355" in body
    assert CallSession.objects.get().status == CallStatus.TRANSFERRING


def test_realtime_off_without_number_apologises(client, settings):
    settings.USE_OPENAI_REALTIME = False
    number = PhoneNumberFactory(number="+815012340001")
    number.agent.handoff_phone_number = ""
    number.agent.save()
    body = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert "<Hangup />" in body and "<Connect>" not in body
    assert CallSession.objects.get().status == CallStatus.COMPLETED


def test_outside_rollout_is_stable_per_call(client):
    number = PhoneNumberFactory(number="+815012340001")
    number.agent.rollout_percentage = 0
    number.agent.save()
    body = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert "<Connect>" not in body and "<Gather" in body
    again = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert "<Gather" in again  # a retried webhook: the same path
    assert CallSession.objects.get().path == CallSession.Path.LEGACY


def test_over_the_cap_gets_overflow_twiml(client, settings):
    settings.MAX_LIVE_CALLS = 2
    number = PhoneNumberFactory(number="+815012340001")
    CallSessionFactory.create_batch(
        2,
        organization=number.organization,
        agent=number.agent,
        status=CallStatus.AI_RESPONDING,
    )
    body = signed_post(
        client, "/api/twilio/voice/incoming", voice_params()
    ).content.decode()
    assert "<Connect>" not in body
    assert "混み合って" in body
    call = CallSession.objects.get(twilio_call_sid=voice_params()["CallSid"])
    assert CallEvent.objects.filter(call=call, type="overflow").exists()


def test_status_completed_ends_call(client):
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    path = f"/api/twilio/status/{call.pk}"
    response = signed_post(
        client,
        path,
        {
            "CallSid": call.twilio_call_sid,
            "CallStatus": "completed",
            "CallDuration": "42",
        },
    )
    assert response.status_code == 204
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "twilio:completed"


def test_status_busy_before_answer(client):
    call = CallSessionFactory(status=CallStatus.INITIATED, direction="outbound")
    signed_post(client, f"/api/twilio/status/{call.pk}", {"CallStatus": "ringing"})
    signed_post(client, f"/api/twilio/status/{call.pk}", {"CallStatus": "busy"})
    call.refresh_from_db()
    assert call.status == CallStatus.BUSY


def test_status_for_unknown_call_is_404(client):
    assert (
        signed_post(
            client, "/api/twilio/status/999999", {"CallStatus": "completed"}
        ).status_code
        == 404
    )


def test_status_repeat_after_end_is_harmless(client):
    call = CallSessionFactory(status=CallStatus.COMPLETED)
    assert (
        signed_post(
            client, f"/api/twilio/status/{call.pk}", {"CallStatus": "completed"}
        ).status_code
        == 204
    )


def test_recording_status_creates_then_updates_row(client):
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    path = f"/api/twilio/recording/status/{call.pk}"
    params = {
        "RecordingSid": "RE" + "a" * 32,
        "RecordingStatus": "in-progress",
        "RecordingUrl": "https://api.twilio.com/rec/RE1",
    }
    assert signed_post(client, path, params).status_code == 204
    params |= {
        "RecordingStatus": "completed",
        "RecordingDuration": "31",
        "ConferenceSid": "CF1",
    }
    assert signed_post(client, path, params).status_code == 204
    recording = Recording.objects.get()
    assert recording.status == "completed" and recording.duration_s == 31
    assert recording.source == "conference"


def test_inbound_status_found_by_call_sid(client):
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    response = signed_post(
        client,
        "/api/twilio/status",
        {"CallSid": call.twilio_call_sid, "CallStatus": "completed"},
    )
    assert response.status_code == 204
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED
    unknown = signed_post(
        client, "/api/twilio/status", {"CallSid": "CAnope", "CallStatus": "completed"}
    )
    assert unknown.status_code == 404


def test_stream_ended_after_model_failure_apologises(client):
    call = CallSessionFactory(status=CallStatus.FAILED)
    body = signed_post(
        client, f"/api/twilio/stream-ended/{call.pk}", {"CallSid": call.twilio_call_sid}
    ).content.decode()
    assert "<Say" in body and "<Hangup />" in body


def test_stream_ended_for_transferring_call_joins_the_room(client):
    call = CallSessionFactory(status=CallStatus.TRANSFERRING)
    body = signed_post(
        client, f"/api/twilio/stream-ended/{call.pk}", {"CallSid": call.twilio_call_sid}
    ).content.decode()
    assert f">handoff-{call.pk}</Conference>" in body
    assert 'startConferenceOnEnter="false"' in body


@pytest.mark.parametrize("answered_by", ["human", "unknown", ""])
def test_outbound_answer_by_a_person_gets_the_stream(client, answered_by):
    call = CallSessionFactory(status=CallStatus.RINGING, direction="outbound")
    body = signed_post(
        client,
        f"/api/twilio/voice/outbound/{call.pk}",
        {"CallSid": call.twilio_call_sid, "AnsweredBy": answered_by},
    ).content.decode()
    assert f"/api/twilio/media-stream/{call.pk}" in body
    call.refresh_from_db()
    assert call.answered_by == answered_by


@pytest.mark.parametrize("answered_by", ["machine_start", "machine_end_beep", "fax"])
def test_outbound_answer_by_a_machine_leaves_the_voicemail(client, answered_by):
    call = CallSessionFactory(status=CallStatus.RINGING, direction="outbound")
    call.agent.voicemail_message = "デモ商事です。またお電話いたします。"
    call.agent.save()
    body = signed_post(
        client,
        f"/api/twilio/voice/outbound/{call.pk}",
        {"CallSid": call.twilio_call_sid, "AnsweredBy": answered_by},
    ).content.decode()
    assert (
        "またお電話いたします" in body
        and "<Hangup />" in body
        and "<Connect" not in body
    )
    call.refresh_from_db()
    assert call.status == CallStatus.COMPLETED and call.answered_by == answered_by


def test_outbound_answer_by_a_machine_without_message_hangs_up(client):
    call = CallSessionFactory(status=CallStatus.RINGING, direction="outbound")
    body = signed_post(
        client,
        f"/api/twilio/voice/outbound/{call.pk}",
        {"CallSid": call.twilio_call_sid, "AnsweredBy": "machine_start"},
    ).content.decode()
    assert "<Hangup />" in body and "<Say" not in body


def test_outbound_answer_is_signed(client):
    call = CallSessionFactory(status=CallStatus.RINGING, direction="outbound")
    assert (
        client.post(
            f"/api/twilio/voice/outbound/{call.pk}", {"AnsweredBy": "human"}
        ).status_code
        == 403
    )


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "not a number"])
def test_withheld_or_odd_caller_id_is_answered(client, caller):
    """Twilio sends 'anonymous' (and the like) for withheld numbers: still a call."""
    PhoneNumberFactory(number="+815012340001")
    response = signed_post(
        client, "/api/twilio/voice/incoming", voice_params(from_=caller)
    )
    assert response.status_code == 200 and b"<Connect" in response.content
    call = CallSession.objects.get()
    assert call.from_number == caller and call.customer is None


def test_malformed_to_is_an_unknown_number(client):
    response = signed_post(
        client, "/api/twilio/voice/incoming", voice_params(to="client:alice")
    )
    assert response.status_code == 200 and b"<Hangup />" in response.content
    assert not CallSession.objects.exists()
