from __future__ import annotations

import factory

from calls.models import CallSession, TranscriptEntry
from tests.agents.factories import AgentProfileFactory, OrganizationFactory


class CallSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CallSession

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(
        AgentProfileFactory, organization=factory.SelfAttribute("..organization")
    )
    direction = CallSession.Direction.INBOUND
    from_number = "+819012345678"
    to_number = "+815012345678"
    twilio_call_sid = factory.Sequence(lambda n: f"CA{n:032x}")


class TranscriptEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TranscriptEntry

    call = factory.SubFactory(CallSessionFactory)
    speaker = TranscriptEntry.Speaker.CUSTOMER
    text = "もしもし"
