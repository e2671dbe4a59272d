"""`/api/calls/<id>/supervise/` (F-75): validation, permission, scope, the happy path."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from agents.models import Operator, Organization
from calls.groups import call_control_group
from calls.models import CallSession
from calls.status import CallStatus
from tests.api.conftest import assert_error
from tests.calls.factories import CallSessionFactory
from tests.calls.layer_inbox import group_inbox, in_memory_layer  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("in_memory_layer")


@pytest.fixture
def supervisor(operator: Operator) -> Operator:
    operator.user_permissions.add(Permission.objects.get(codename="supervise_call"))
    return operator


@pytest.fixture
def live_call(org: Organization) -> CallSession:
    return CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)


def url(call: CallSession) -> str:
    return f"/api/calls/{call.pk}/supervise/"


def bridge_inbox(call: CallSession) -> Any:
    return group_inbox(call_control_group(call.pk))


def test_take_over_then_get_shows_the_holder_and_history(
    api: APIClient, supervisor: Operator, live_call: CallSession
) -> None:
    inbox = bridge_inbox(live_call)
    response = api.post(url(live_call), {"action": "take_over"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "call_id": live_call.pk,
        "action": "take_over",
        "holder": "supervisor",
        "mode": "take-over",
        "held_by": supervisor.pk,
        "by_name": supervisor.username,
    }
    assert [m["command"] for m in inbox()] == ["supervise-take-over"]
    body = api.get(url(live_call)).json()
    assert (body["holder"], body["held_by"]) == ("supervisor", supervisor.pk)
    assert [(r["action"], r["by_id"]) for r in body["history"]] == [
        ("take-over", supervisor.pk)
    ]


def test_whisper_sends_the_text(
    api: APIClient, supervisor: Operator, live_call: CallSession
) -> None:
    inbox = bridge_inbox(live_call)
    response = api.post(
        url(live_call), {"action": "whisper", "text": "急いで"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["holder"] == "ai"
    [message] = inbox()
    assert (message["command"], message["text"], message["by_id"]) == (
        "instruct",
        "急いで",
        supervisor.pk,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": "dance"}, "action"),
        ({"action": "whisper"}, "text"),
        ({"action": "whisper", "text": ""}, "text"),
        ({"action": "whisper", "text": "x" * 2001}, "text"),
        ({"action": "listen_phone", "phone": "12"}, "phone"),
        ({"action": "listen_phone"}, "phone"),  # and none on file
        ({"action": "barge", "coaching": "maybe"}, "coaching"),
    ],
)
def test_bad_input_is_400_and_sends_nothing(
    api: APIClient,
    supervisor: Operator,
    live_call: CallSession,
    body: dict[str, Any],
    field: str,
) -> None:
    inbox = bridge_inbox(live_call)
    response = api.post(url(live_call), body, format="json")
    assert_error(response, 400, "validation_error", field)
    assert not inbox()
    assert not live_call.events.exists()


def test_without_the_permission_it_is_403_even_for_bad_input(
    api: APIClient, operator: Operator, live_call: CallSession
) -> None:
    inbox = bridge_inbox(live_call)
    for body in ({"action": "take_over"}, {"action": "dance"}):
        response = api.post(url(live_call), body, format="json")
        assert_error(response, 403, "permission_denied")
    assert_error(api.get(url(live_call)), 403, "permission_denied")
    assert not inbox()
    live_call.refresh_from_db()
    assert live_call.held_by_id is None


def test_another_organisations_call_is_404(
    api: APIClient, supervisor: Operator, other_org: Organization
) -> None:
    theirs = CallSessionFactory(organization=other_org, status=CallStatus.AI_RESPONDING)
    inbox = bridge_inbox(theirs)
    response = api.post(url(theirs), {"action": "take_over"}, format="json")
    assert_error(response, 404, "not_found")
    assert_error(api.get(url(theirs)), 404, "not_found")
    assert not inbox()


def test_an_ended_call_is_409(
    api: APIClient, supervisor: Operator, org: Organization
) -> None:
    call = CallSessionFactory(organization=org, status=CallStatus.COMPLETED)
    response = api.post(url(call), {"action": "barge"}, format="json")
    assert_error(response, 409, "call_not_live")


def test_listen_phone_on_an_ai_call_is_409(
    api: APIClient, supervisor: Operator, live_call: CallSession
) -> None:
    response = api.post(
        url(live_call),
        {"action": "listen_phone", "phone": "090-1234-5678"},
        format="json",
    )
    assert_error(response, 409, "call_not_supervisable")
    assert not live_call.events.exists()


def test_listen_phone_rings_your_own_phone_by_default(
    api: APIClient,
    supervisor: Operator,
    org: Organization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `phone`: the operator's own number, E.164; the event shows it masked."""
    dialled: list[dict[str, Any]] = []

    def participant_create(**kwargs: Any) -> str:
        dialled.append(kwargs)
        return "CA" + "e" * 32

    monkeypatch.setattr(
        "calls.twilio_client.twilio_participant_create", participant_create
    )
    supervisor.phone_number = "090-1234-5678"
    supervisor.save()
    call = CallSessionFactory(
        organization=org,
        status=CallStatus.HUMAN_CONNECTED,
        handoff_conference_name="handoff-9",
        handoff_agent_call_sid="CA" + "a" * 32,
    )
    response = api.post(
        url(call), {"action": "listen_phone", "coaching": True}, format="json"
    )
    assert response.status_code == 200, response.content
    assert dialled == [
        {
            "conference": "handoff-9",
            "to": "+819012345678",
            "muted": False,
            "coach_call_sid": "CA" + "a" * 32,
        }
    ]
    event = call.events.get(type="supervise-phone-listen")
    assert (event.payload["to"], event.payload["coaching"]) == ("090****5678", True)
