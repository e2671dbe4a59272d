"""Outbound calls: the service, the endpoint, and the Twilio REST client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from rest_framework.test import APIClient

from agents.models import Organization
from calls.models import CallSession
from calls.status import CallStatus
from calls.twilio_client import TwilioError, dial_outbound
from tests.agents.factories import AgentProfileFactory, CustomerFactory
from tests.api.conftest import assert_error
from tests.api.fakes import FakeDialer
from tests.calls.factories import CallSessionFactory


@pytest.fixture
def agent(org: Organization) -> Any:
    return AgentProfileFactory(
        organization=org,
        instructions_template="{{company_name}}の営業です。{{customer_name}}にご案内します。",
    )


def test_outbound_creates_the_call_and_dials(
    api: APIClient, org: Organization, agent: Any, dialer: FakeDialer
) -> None:
    response = api.post(
        "/api/calls/outbound",
        {
            "agent": agent.pk,
            "to": "080-1111-2222",
            "contact_variables": {"customer_name": "山田様"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    call = CallSession.objects.get(pk=body["id"])
    assert dialer.dialled == [call]
    assert (call.direction, call.status) == ("outbound", "initiated")
    assert call.to_number == "+818011112222"
    assert call.from_number == "+815012345678"
    assert call.twilio_call_sid == body["twilio_call_sid"] == f"CA{call.pk:032x}"
    assert call.contact_variables == {"customer_name": "山田様"}
    assert list(call.events.values_list("type", flat=True)) == [
        "outbound-requested",
        "outbound-dialed",
    ]


def test_known_customer_lends_name(
    api: APIClient, org: Organization, agent: Any, dialer: FakeDialer
) -> None:
    customer = CustomerFactory(
        organization=org, phone_number="+818011112222", name="佐藤様"
    )
    response = api.post(
        "/api/calls/outbound", {"agent": agent.pk, "to": "08011112222"}, format="json"
    )
    assert response.status_code == 201, response.content
    call = dialer.dialled[0]
    assert call.customer == customer
    assert call.contact_variables == {"customer_name": "佐藤様"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "080-1111-2222"}, "agent"),
        ({"agent": "{agent}", "to": "12345"}, "to"),
        ({"agent": "{agent}"}, "to"),
        (
            {"agent": "{agent}", "to": "080-1111-2222", "contact_variables": []},
            "contact_variables",
        ),
        # The template needs {{customer_name}}; nothing supplies it.
        ({"agent": "{agent}", "to": "080-1111-2222"}, "contact_variables"),
    ],
)
def test_bad_outbound_is_400_naming_the_field(
    api: APIClient, agent: Any, dialer: FakeDialer, body: dict[str, Any], field: str
) -> None:
    body = {k: (agent.pk if v == "{agent}" else v) for k, v in body.items()}
    response = api.post("/api/calls/outbound", body, format="json")
    assert_error(response, 400, "validation_error", field)
    assert dialer.dialled == [] and not CallSession.objects.exists()


def test_other_organisations_agent_is_400(
    api: APIClient, other_org: Organization, dialer: FakeDialer
) -> None:
    """Another organisation's agent does not exist for you."""
    foreign = AgentProfileFactory(organization=other_org)
    response = api.post(
        "/api/calls/outbound", {"agent": foreign.pk, "to": "0311112222"}, format="json"
    )
    assert_error(response, 400, "validation_error", "agent")
    assert dialer.dialled == []


def test_twilio_failure_is_502_and_the_call_fails(
    api: APIClient, agent: Any, dialer: FakeDialer
) -> None:
    dialer.error = TwilioError("Twilio refused to place the call: 21215")
    response = api.post(
        "/api/calls/outbound",
        {
            "agent": agent.pk,
            "to": "0311112222",
            "contact_variables": {"customer_name": "様"},
        },
        format="json",
    )
    assert_error(response, 502, "upstream_error")
    call = CallSession.objects.get()
    assert call.status == CallStatus.FAILED
    assert call.end_reason.startswith("dial failed")


def test_missing_caller_id_is_503(api: APIClient, agent: Any, settings: Any) -> None:
    settings.TWILIO_FROM_NUMBER = ""
    response = api.post(
        "/api/calls/outbound",
        {
            "agent": agent.pk,
            "to": "0311112222",
            "contact_variables": {"customer_name": "様"},
        },
        format="json",
    )
    assert_error(response, 503, "not_configured")


class FakeTwilio(BaseHTTPRequestHandler):
    """Twilio's Calls resource, just enough for `calls.create`."""

    requests: list[tuple[str, dict[str, list[str]], str]] = []
    reply_status = 201

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = parse_qs(self.rfile.read(length).decode())
        FakeTwilio.requests.append((self.path, form, self.headers["Authorization"]))
        body: dict[str, Any] = (
            {"sid": "CAfeedfeedfeedfeedfeedfeedfeedfeed", "status": "queued"}
            if self.reply_status == 201
            else {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}
        )
        data = json.dumps(body).encode()
        self.send_response(self.reply_status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_twilio(settings: Any) -> Iterator[type[FakeTwilio]]:
    FakeTwilio.requests = []
    FakeTwilio.reply_status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilio)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{server.server_port}"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "secret"
    settings.PUBLIC_BASE_URL = "https://cc.example.jp"
    yield FakeTwilio
    server.shutdown()
    server.server_close()


def test_dial_outbound_asks_twilio_for_amd_and_callbacks(
    fake_twilio: Any, org: Organization
) -> None:
    """The real client posts to TWILIO_API_BASE_URL with our webhooks and AMD."""
    call = CallSessionFactory(
        organization=org,
        direction="outbound",
        from_number="+815012345678",
        to_number="+818011112222",
    )
    assert dial_outbound(call) == "CAfeedfeedfeedfeedfeedfeedfeedfeed"
    [(path, form, auth)] = fake_twilio.requests
    assert path == f"/2010-04-01/Accounts/{'AC' + '1' * 32}/Calls.json"
    assert auth.startswith("Basic ")
    assert form["To"] == ["+818011112222"]
    assert form["From"] == ["+815012345678"]
    assert form["Url"] == [f"https://cc.example.jp/api/twilio/voice/outbound/{call.pk}"]
    assert form["StatusCallback"] == [
        f"https://cc.example.jp/api/twilio/status/{call.pk}"
    ]
    assert form["StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert form["MachineDetection"] == ["Enable"]


def test_dial_outbound_turns_twilio_errors_into_twilio_error(
    fake_twilio: Any, org: Organization
) -> None:
    fake_twilio.reply_status = 400
    call = CallSessionFactory(
        organization=org, direction="outbound", to_number="+81311112222"
    )
    with pytest.raises(TwilioError) as caught:
        dial_outbound(call)
    assert caught.value.http_status == 502
    assert caught.value.details == {"status": 400, "twilio_code": 21211}


def test_dial_outbound_unreachable_twilio_is_twilio_error(org: Organization) -> None:
    """Nothing listens at the configured URL (conftest): an upstream error, not a crash."""
    call = CallSessionFactory(
        organization=org, direction="outbound", to_number="+81311112222"
    )
    with pytest.raises(TwilioError):
        dial_outbound(call)
