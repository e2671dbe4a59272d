"""Calls: list with filters and pages, detail, transcript, events, live control."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Operator, Organization
from calls.groups import call_control_group
from calls.models import CallEvent, CallSession
from calls.status import CallStatus
from tests.agents.factories import AgentProfileFactory
from tests.api.conftest import assert_error
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_list_shows_only_own_calls_newest_first(
    api: APIClient, org: Organization, other_org: Organization
) -> None:
    first = CallSessionFactory(organization=org)
    second = CallSessionFactory(organization=org)
    CallSessionFactory(organization=other_org)
    body = api.get("/api/calls/").json()
    assert body["count"] == 2
    assert [row["id"] for row in body["results"]] == [second.pk, first.pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=completed", {"done"}),
        ("direction=outbound", {"out"}),
        ("phone=090-1234-5678", {"done"}),  # national format, the caller
        ("phone=%2B81 90 1234 5678", {"done"}),  # international, spaced
        ("phone=０８０１１１１２２２２", {"out"}),  # full-width, the callee
        ("status=ai-responding&direction=inbound", {"live"}),
    ],
)
def test_filters(
    api: APIClient, org: Organization, query: str, expected: set[str]
) -> None:
    calls = {
        "done": CallSessionFactory(
            organization=org, status=CallStatus.COMPLETED, from_number="+819012345678"
        ),
        "out": CallSessionFactory(
            organization=org,
            direction=CallSession.Direction.OUTBOUND,
            from_number="+815012345678",
            to_number="+818011112222",
        ),
        "live": CallSessionFactory(
            organization=org,
            status=CallStatus.AI_RESPONDING,
            from_number="+81311112222",
        ),
    }
    names = {call.pk: name for name, call in calls.items()}
    assert {names[i] for i in ids(api.get(f"/api/calls/?{query}"))} == expected


def test_filter_by_agent_and_date_range(api: APIClient, org: Organization) -> None:
    agent = AgentProfileFactory(organization=org)
    old = CallSessionFactory(organization=org, agent=agent)
    new = CallSessionFactory(organization=org, agent=agent)
    other = CallSessionFactory(organization=org)
    CallSession.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    assert ids(api.get(f"/api/calls/?agent={agent.pk}")) == {old.pk, new.pk}
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert ids(api.get(f"/api/calls/?created_after={yesterday}")) == {new.pk, other.pk}
    assert ids(api.get(f"/api/calls/?created_before={yesterday}")) == {old.pk}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=ringing-ish", "status"),
        ("direction=sideways", "direction"),
        ("created_after=last-tuesday", "created_after"),
        ("created_after=2026-01-02&created_before=2026-01-01", "created_before"),
        ("agent=0", "agent"),
        ("phone=12", "phone"),
        ("page=0", "page"),
        ("page_size=many", "page_size"),
    ],
)
def test_bad_filter_is_400_naming_it(api: APIClient, query: str, field: str) -> None:
    assert_error(api.get(f"/api/calls/?{query}"), 400, "validation_error", field)


def test_pagination(api: APIClient, org: Organization) -> None:
    for _ in range(5):
        CallSessionFactory(organization=org)
    page1 = api.get("/api/calls/?page_size=2").json()
    assert page1["count"] == 5 and len(page1["results"]) == 2
    assert page1["previous"] is None and "page=2" in page1["next"]
    page3 = api.get("/api/calls/?page_size=2&page=3").json()
    assert len(page3["results"]) == 1 and page3["next"] is None
    assert_error(api.get("/api/calls/?page_size=2&page=4"), 404, "not_found")


def test_detail_has_transcript_and_masks_agent_number(
    api: APIClient, org: Organization
) -> None:
    call = CallSessionFactory(
        organization=org,
        status=CallStatus.HUMAN_CONNECTED,
        handoff_agent_number="+818070239355",
    )
    TranscriptEntryFactory(call=call, text="もしもし", offset_ms=100)
    TranscriptEntryFactory(
        call=call, speaker="ai", text="はい、承ります", offset_ms=900
    )
    body = api.get(f"/api/calls/{call.pk}/").json()
    assert body["handoff_agent_number"] == "080****9355"
    assert body["from_number"] == "+819012345678"
    assert [e["text"] for e in body["transcript"]] == ["もしもし", "はい、承ります"]
    assert body["agent_name"] == call.agent.name


def test_transcript_in_call_order(api: APIClient, org: Organization) -> None:
    call = CallSessionFactory(organization=org)
    TranscriptEntryFactory(call=call, text="second", offset_ms=2000)
    TranscriptEntryFactory(call=call, text="first", offset_ms=10)
    body = api.get(f"/api/calls/{call.pk}/transcript/").json()
    assert [e["text"] for e in body] == ["first", "second"]


def test_events(api: APIClient, org: Organization) -> None:
    call = CallSessionFactory(organization=org)
    CallEvent.objects.create(
        call=call, type="stream-start", payload={"stream_sid": "MZ1"}
    )
    body = api.get(f"/api/calls/{call.pk}/events/").json()
    assert [(e["type"], e["payload"]) for e in body] == [
        ("stream-start", {"stream_sid": "MZ1"})
    ]


def listen(call_id: int) -> Any:
    """Join the call's control group as its bridge would; return a receive()."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(call_control_group(call_id), channel)
    return lambda: async_to_sync(layer.receive)(channel)


def test_hangup_sends_command_to_the_bridge(api: APIClient, org: Organization) -> None:
    call = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    receive = listen(call.pk)
    response = api.post(f"/api/calls/{call.pk}/hangup")
    assert response.status_code == 202
    assert response.json() == {
        "call_id": call.pk,
        "command": "hangup",
        "status": "ai-responding",
    }
    assert receive() == {"type": "call.control", "command": "hangup"}
    assert call.events.filter(type="hangup-requested").exists()


def test_instruct_sends_text_to_the_bridge(
    api: APIClient, org: Organization, operator: Operator
) -> None:
    """The command says who sent it (by_id, by_name), as the event does."""
    call = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    receive = listen(call.pk)
    response = api.post(
        f"/api/calls/{call.pk}/instruct",
        {"text": "料金プランを案内して"},
        format="json",
    )
    assert response.status_code == 202
    assert receive() == {
        "type": "call.control",
        "command": "instruct",
        "text": "料金プランを案内して",
        "by_id": operator.pk,
        "by_name": operator.username,
    }
    event = call.events.get(type="instruct-requested")
    assert event.payload["by_id"] == operator.pk


@pytest.mark.parametrize(
    "body", [{}, {"text": ""}, {"text": "x" * 2001}, {"text": None}]
)
def test_instruct_needs_text(
    api: APIClient, org: Organization, body: dict[str, Any]
) -> None:
    call = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    response = api.post(f"/api/calls/{call.pk}/instruct", body, format="json")
    assert_error(response, 400, "validation_error", "text")


@pytest.mark.parametrize("action", ["hangup", "instruct"])
def test_control_of_ended_call_is_409(
    api: APIClient, org: Organization, action: str
) -> None:
    call = CallSessionFactory(organization=org, status=CallStatus.COMPLETED)
    response = api.post(f"/api/calls/{call.pk}/{action}", {"text": "x"}, format="json")
    error = assert_error(response, 409, "call_not_live")
    assert error["details"] == {"status": "completed"}


def test_control_with_layer_down_is_502(
    api: APIClient, org: Organization, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "tests.api.fakes.BrokenChannelLayer"}
    }
    call = CallSessionFactory(organization=org, status=CallStatus.AI_RESPONDING)
    assert_error(api.post(f"/api/calls/{call.pk}/hangup"), 502, "upstream_error")
