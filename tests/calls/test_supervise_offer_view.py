"""The listen signalling's refusals (F-75): nothing starts without a live bridge call."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse

from calls import supervise_listen
from calls.models import CallSession
from calls.status import CallStatus
from tests.agents.factories import OperatorFactory
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db

OFFER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def supervisor_of(organization) -> object:
    operator = OperatorFactory(organization=organization)
    permission, _ = Permission.objects.get_or_create(
        codename="supervise_call",
        content_type=ContentType.objects.get_for_model(CallSession),
        defaults={"name": "Can supervise live calls"},
    )
    operator.user_permissions.add(permission)
    return operator


def post(client: Client, call_id: int, body: object) -> tuple[int, dict]:
    reply = client.post(
        reverse("calls:supervise-offer", kwargs={"pk": call_id}),
        data=json.dumps(body),
        content_type="application/json",
    )
    return reply.status_code, reply.json()


def test_without_the_permission_it_is_403_and_nothing_is_sent(monkeypatch) -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    sent: list[dict] = []

    async def send(**data) -> None:
        sent.append(data)

    monkeypatch.setattr(supervise_listen, "acall_control_send", send)
    client = Client()
    client.force_login(OperatorFactory(organization=call.organization))
    status, body = post(client, call.pk, {"sdp": OFFER})
    assert status == 403
    assert body["error"]["code"] == "permission_denied"
    assert sent == []


def test_another_organisations_call_or_an_unknown_one_is_404() -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    client = Client()
    client.force_login(supervisor_of(OperatorFactory().organization))
    assert post(client, call.pk, {"sdp": OFFER})[0] == 404
    assert post(client, 999_999, {"sdp": OFFER})[0] == 404


@pytest.mark.parametrize(
    "status", [CallStatus.COMPLETED, CallStatus.HUMAN_CONNECTED, CallStatus.RINGING]
)
def test_a_call_not_with_the_ai_is_409(status) -> None:
    call = CallSessionFactory(status=status)
    client = Client()
    client.force_login(supervisor_of(call.organization))
    code, body = post(client, call.pk, {"sdp": OFFER})
    assert code == 409
    assert body["error"]["details"]["status"] == status


@pytest.mark.parametrize("body", [{}, {"sdp": "hello"}, ["v=0"], {"sdp": 5}])
def test_an_unusable_body_is_400(body) -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    client = Client()
    client.force_login(supervisor_of(call.organization))
    assert post(client, call.pk, body)[0] == 400


def test_no_bridge_answering_is_504(monkeypatch) -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    monkeypatch.setattr(supervise_listen, "ANSWER_TIMEOUT_S", 0.2)
    client = Client()
    client.force_login(supervisor_of(call.organization))
    code, body = post(client, call.pk, {"sdp": OFFER})
    assert code == 504
    assert body["error"]["code"] == "upstream_error"


def test_it_needs_a_login_and_a_post() -> None:
    call = CallSessionFactory(status=CallStatus.AI_RESPONDING)
    url = reverse("calls:supervise-offer", kwargs={"pk": call.pk})
    assert (
        Client().post(url, data="{}", content_type="application/json").status_code
        == 302
    )
    client = Client()
    client.force_login(supervisor_of(call.organization))
    assert client.get(url).status_code == 405
