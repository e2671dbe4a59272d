"""Schemathesis against our own schema, in process (WSGI), authenticated by token.

Every operation of /api/schema/ gets bounded, derandomized examples (the schema's
examples, boundary "coverage" cases, and a few fuzzed ones). Path ids, the outbound
call's agent and a new campaign's agent are pointed at real objects of the caller's
organisation so the happy paths are exercised too; ids no database holds (negative,
huge) go as generated. Checks: no 5xx, every status documented, every body and
content type as the schema says.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.models import Permission
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig

from agents.models import Appointment
from callcenter.api import ID_MAX
from calls.campaigns.models import DoNotCall
from calls.models import CallEvent, Recording
from calls.status import CallStatus
from jobs.models import Job
from notifications.models import Delivery, Event, WebhookEndpoint
from tests.agents.factories import AgentProfileFactory, CustomerFactory, OperatorFactory
from tests.calls.campaign_factories import (
    AttemptFactory,
    CampaignFactory,
    ContactFactory,
)
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory

MAX_EXAMPLES = 8

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
        },
    }
)

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", get_wsgi_application(), config=CONFIG
)

# Statuses seen per operation, printed at the end (`pytest -s`) to show the depth.
CASES: dict[str, Counter[int]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def _report_cases() -> Iterator[None]:
    yield
    total = sum(sum(c.values()) for c in CASES.values())
    print(f"\nschemathesis: {total} cases over {len(CASES)} operations")
    for label, statuses in sorted(CASES.items()):
        seen = ", ".join(f"{code}×{n}" for code, n in sorted(statuses.items()))
        print(f"  {label}: {seen}")


@pytest.fixture
def _keep_test_connection() -> Iterator[None]:
    """Keep the test's database connection open across WSGI requests.

    Django closes "old" connections when a request starts and finishes; inside a
    test transaction that would close the test's own connection (on a file
    database). Django's test client disconnects these handlers; so do we.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(
    db: None, settings: Any, _keep_test_connection: None, monkeypatch: Any
) -> dict[str, Any]:
    """An operator's token and one object of each kind in their organisation."""
    # Handoffs dial through Twilio's REST API: answer with SIDs, never the network.
    monkeypatch.setattr(
        "handoff.services.twilio_call_create", lambda **_: "CA" + "f" * 32
    )
    monkeypatch.setattr("handoff.services.twilio_call_update", lambda **_: None)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"mutations": "100000/min", "outbound": "100000/min"},
    }
    operator = OperatorFactory()
    # A supervisor (F-75), so /supervise/ reaches its 200s and 409s, not only 403.
    operator.user_permissions.add(Permission.objects.get(codename="supervise_call"))
    org = operator.organization
    agent = AgentProfileFactory(organization=org)
    customer = CustomerFactory(organization=org)
    call = CallSessionFactory(
        organization=org,
        agent=agent,
        customer=customer,
        status=CallStatus.AI_RESPONDING,
        handoff_agent_number="+818070239355",
    )
    TranscriptEntryFactory(call=call)
    CallEvent.objects.create(call=call, type="stream-start", payload={"n": 1})
    Recording.objects.create(call=call, source=Recording.Source.BRIDGE, duration_s=3)
    appointment = Appointment.objects.create(
        organization=org,
        customer=customer,
        call=call,
        date="2026-01-05",
        time="10:00",
        name="x",
    )
    # Campaigns use an agent of their own: one they use cannot be deleted (409), and
    # DELETE /api/agents/{id}/ should still reach its 204.
    campaign_agent = AgentProfileFactory(organization=org)
    campaign = CampaignFactory(organization=org, agent=campaign_agent)
    AttemptFactory(contact=ContactFactory(campaign=campaign), call=call, duration=7)
    dnc = DoNotCall.objects.create(
        organization=org, phone="+819011112222", source=DoNotCall.Source.OPERATOR
    )
    # Webhook URLs are not resolved at save with private URLs allowed: no DNS.
    settings.ALLOW_PRIVATE_URLS = True
    endpoint = WebhookEndpoint.objects.create(
        organization=org,
        url="http://127.0.0.1:9/hook",
        secret="whsec_schemathesis_0123",
        events=["job.created"],
    )
    Delivery.objects.create(
        endpoint=endpoint,
        event=Event.objects.create(organization=org, type="job.created", data={}),
    )
    call.summary, call.extraction = "要約", {"job_required": True}
    call.save(update_fields=["summary", "extraction"])
    job = Job.objects.create(organization=org, customer=customer, title="修理")
    token, _ = Token.objects.get_or_create(user=operator)
    return {
        "headers": {"Authorization": f"Token {token.key}"},
        "ids": {
            "calls": call.pk,
            "agents": agent.pk,
            "customers": customer.pk,
            "appointments": appointment.pk,
            "campaigns": campaign.pk,
            "campaign_agent": campaign_agent.pk,
            "dnc": dnc.pk,
            "webhook-endpoints": endpoint.pk,
            "jobs": job.pk,
        },
    }


def storable_id(value: Any) -> bool:
    """True for an id a database could hold (the coverage phase sends strings)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return type(value) is int and 0 <= value <= ID_MAX


def aim_at_real_objects(case: Any, seeded: dict[str, Any]) -> None:
    """Point path ids (and the outbound agent) at the caller's own objects.

    Ids no database can hold (negative, beyond 64 bits) are sent as generated.
    """
    resource = case.path.split("/")[2]
    for name, value in (case.path_parameters or {}).items():
        if storable_id(value):
            case.path_parameters[name] = seeded["ids"][resource]
    if case.path == "/api/calls/outbound" and isinstance(case.body, dict):
        case.body["agent"] = seeded["ids"]["agents"]
    if case.path == "/api/campaigns/" and isinstance(case.body, dict):
        case.body["agent"] = seeded["ids"]["campaign_agent"]


@schema.parametrize()
@hypothesis.settings(
    suppress_health_check=list(hypothesis.HealthCheck),
    deadline=None,
)
def test_api_conforms_to_its_schema(case: Any, seeded: dict[str, Any]) -> None:
    """No 5xx; every status, header and body as the schema documents."""
    aim_at_real_objects(case, seeded)
    response = case.call_and_validate(headers=seeded["headers"])
    CASES[case.operation.label][response.status_code] += 1
