"""The handoff API (F-31): who may ask, what they get back, and every refusal.

Refusals are checked in-process with DRF's client (they happen before anything is
dialled); replies of real handoffs come from the running service on the emulators.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import CallStatus
from handoff.services import CONNECTING_LINE
from realtime.emulators.caller import Pause
from tests.agents.factories import (
    AgentProfileFactory,
    OperatorFactory,
    OrganizationFactory,
)
from tests.calls.factories import CallSessionFactory
from tests.handoff.conftest import (
    AGENT_MASKED,
    AGENT_NUMBER,
    api_post,
    place_inbound_call,
    wait_status,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _fresh_throttles(settings):
    cache.clear()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    cache.clear()


@pytest.fixture
def org():
    return OrganizationFactory()


@pytest.fixture
def client(org) -> APIClient:
    """An operator of `org` (no phone of their own), by token."""
    operator = OperatorFactory(organization=org)
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}"
    )
    return api


def live_call(org, **fields) -> CallSession:
    fields.setdefault("status", CallStatus.AI_RESPONDING)
    return CallSessionFactory(
        organization=org,
        agent=AgentProfileFactory(organization=org),
        **fields,
    )


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert field in error["details"], error
    return error


def assert_untouched(call: CallSession) -> None:
    """Nothing of a handoff happened: still with the AI, nothing recorded."""
    call.refresh_from_db()
    assert call.status == CallStatus.AI_RESPONDING
    assert call.handoff_trigger == "" and call.handoff_agent_call_sid == ""
    assert not CallEvent.objects.filter(call=call, type="handoff-initiated").exists()
    assert not TranscriptEntry.objects.filter(call=call, text=CONNECTING_LINE).exists()


# -- refusals (in-process) ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/calls/{id}/handoff", {}),
        ("/api/calls/handoff-by-phone", {"callSid": "CA1"}),
    ],
)
def test_unauthenticated_is_401(org, path, body):
    call = live_call(org)
    response = APIClient().post(path.format(id=call.pk), body, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert_untouched(call)


def test_bad_token_is_401(org):
    call = live_call(org)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-key")
    response = api.post(f"/api/calls/{call.pk}/handoff", {}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert_untouched(call)


def test_another_organisations_call_is_404(client):
    """By id or by the caller's number: another organisation's call is not found."""
    other = live_call(OrganizationFactory(), from_number="+819077778888")
    response = client.post(f"/api/calls/{other.pk}/handoff", {}, format="json")
    assert_error(response, 404, "not_found")
    response = client.post(
        "/api/calls/handoff-by-phone", {"phoneNumber": "090-7777-8888"}, format="json"
    )
    assert_error(response, 404, "not_found")
    response = client.post(
        "/api/calls/handoff-by-phone",
        {"callSid": other.twilio_call_sid},
        format="json",
    )
    assert_error(response, 404, "not_found")
    assert_untouched(other)


def test_unknown_call_is_404(client):
    assert_error(
        client.post("/api/calls/999999/handoff", {}, format="json"), 404, "not_found"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phoneNumber"),
        ({"phoneNumber": ""}, "phoneNumber"),
        ({"phoneNumber": "12345"}, "phoneNumber"),
        ({"phoneNumber": "電話"}, "phoneNumber"),
        ({"callSid": "CA" + "0" * 70}, "callSid"),
        ({"callSid": "CA1", "reason": "x" * 501}, "reason"),
    ],
)
def test_handoff_by_phone_bad_input_is_400_naming_the_field(client, body, field):
    assert_error(
        client.post("/api/calls/handoff-by-phone", body, format="json"),
        400,
        "validation_error",
        field,
    )


def test_handoff_bad_input_is_400_naming_the_field(client, org):
    call = live_call(org)
    response = client.post(
        f"/api/calls/{call.pk}/handoff", {"reason": ["not", "text"]}, format="json"
    )
    assert_error(response, 400, "validation_error", "reason")
    response = client.post(
        f"/api/calls/{call.pk}/handoff", "reason=x", content_type="text/plain"
    )
    assert response.status_code == 415, response.content
    assert_untouched(call)


@pytest.mark.parametrize(
    "status",
    [
        CallStatus.RINGING,
        CallStatus.COMPLETED,
        CallStatus.FAILED,
    ],
)
def test_call_not_with_the_ai_is_409_call_not_live(client, org, status):
    call = live_call(org, status=status)
    response = client.post(f"/api/calls/{call.pk}/handoff", {}, format="json")
    error = assert_error(response, 409, "call_not_live")
    assert status in error["message"]
    call.refresh_from_db()
    assert call.status == status


def test_no_agent_number_is_409_and_the_call_stays_with_the_ai(client, org):
    call = live_call(org)
    call.agent.handoff_phone_number = ""
    call.agent.save(update_fields=["handoff_phone_number"])
    response = client.post(f"/api/calls/{call.pk}/handoff", {}, format="json")
    assert_error(response, 409, "no_agent_number")
    assert_untouched(call)


def test_session_login_works_too(org):
    """Session authentication (the operators' pages) reaches the same endpoint."""
    operator = OperatorFactory(organization=org)
    api = APIClient()
    api.force_login(operator)
    call = live_call(org, status=CallStatus.COMPLETED)
    response = api.post(f"/api/calls/{call.pk}/handoff", {}, format="json")
    assert_error(response, 409, "call_not_live")


def test_twilio_refusing_the_agent_leg_is_502_and_the_call_stays_with_the_ai(
    client, org, settings
):
    """The agent's leg cannot be dialled: 502, nothing of the handoff is kept (the
    bridge was never told), and the failure is on the timeline."""
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # refused
    call = live_call(org)
    response = client.post(f"/api/calls/{call.pk}/handoff", {}, format="json")
    assert_error(response, 502, "upstream_error")
    assert_untouched(call)
    failed = CallEvent.objects.get(call=call, type="handoff-failed")
    assert failed.payload["reason"].startswith("agent-dial-failed")


# -- replies of real handoffs (running service, emulators) ----------------------


async def test_reply_masks_the_number_and_a_second_request_gets_the_same_leg(
    service, start_fake_realtime, twilio, inbound_agent, token
):
    """The reply carries the call, the agent leg's SID, the status and the agent's
    number masked; asking again creates nothing and names the same leg."""
    async with start_fake_realtime():
        handle, call = await place_inbound_call(twilio, service, [Pause(ms=60_000)])
        await handle.wait_stream(timeout=10)
        await wait_status(call, CallStatus.AI_RESPONDING)
        url = f"{service}/api/calls/{call.pk}/handoff"
        first = await api_post(url, token=token, body={"reason": "一回目"})
        second = await api_post(url, token=token, body={"reason": "二回目"})
        assert first.status_code == second.status_code == 202, (first, second)
        one, two = first.json(), second.json()
        assert one == {
            "call_id": call.pk,
            "status": CallStatus.TRANSFERRING,
            "agent_call_sid": twilio.calls_to(AGENT_NUMBER)[0].sid,
            "agent_number": AGENT_MASKED,
            "created": True,
        }
        assert two["created"] is False
        assert two["agent_call_sid"] == one["agent_call_sid"]
        assert two["agent_number"] == AGENT_MASKED
        assert AGENT_NUMBER not in first.text + second.text
        assert len(twilio.calls_to(AGENT_NUMBER)) == 1
        await call.arefresh_from_db()
        assert call.handoff_reason == "一回目"
        await twilio.hang_up(handle.sid)


async def test_by_phone_accepts_any_japanese_format_and_the_operators_number_wins(
    service, start_fake_realtime, twilio, inbound_agent, operator, token
):
    """Every Japanese way of writing the caller's number finds the same live call;
    the operator's own number is the one dialled, masked in the reply."""
    operator.phone_number = "+819011112222"
    await operator.asave(update_fields=["phone_number"])
    formats = [
        "090-1234-5678",
        "09012345678",
        "+81 90-1234-5678",
        "+819012345678",
        "０９０－１２３４－５６７８",
    ]
    async with start_fake_realtime():
        handle, call = await place_inbound_call(twilio, service, [Pause(ms=60_000)])
        await handle.wait_stream(timeout=10)
        await wait_status(call, CallStatus.AI_RESPONDING)
        replies = []
        for number in formats:
            reply = await api_post(
                f"{service}/api/calls/handoff-by-phone",
                token=token,
                body={"phoneNumber": number},
            )
            assert reply.status_code == 202, (number, reply.text)
            replies.append(reply.json())
        assert [r["created"] for r in replies] == [True] + [False] * (len(formats) - 1)
        assert {r["call_id"] for r in replies} == {call.pk}
        assert {r["agent_number"] for r in replies} == {"090****2222"}
        legs = twilio.calls_to("+819011112222")
        assert [leg.sid for leg in legs] == [replies[0]["agent_call_sid"]]
        assert not twilio.calls_to(AGENT_NUMBER)  # the profile's number is not rung
        assert {r["agent_call_sid"] for r in replies} == {legs[0].sid}
        await twilio.hang_up(handle.sid)
