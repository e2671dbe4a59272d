"""Factories of campaigns, contacts and attempts for the API and page tests."""

from __future__ import annotations

import factory

from calls.campaigns.models import Attempt, Campaign, Contact
from tests.agents.factories import AgentProfileFactory, OrganizationFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    """A draft campaign whose opening discloses everything (it may start)."""

    class Meta:
        model = Campaign

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(
        AgentProfileFactory, organization=factory.SelfAttribute("..organization")
    )
    name = factory.Sequence(lambda n: f"春のご案内{n}")
    from_number = "+815012345678"
    business_name = "テスト商事"
    caller_name = "山田"
    product = "光回線"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    campaign = factory.SubFactory(CampaignFactory)
    phone = factory.Sequence(lambda n: f"+8190{10000000 + n}")
    name = factory.Sequence(lambda n: f"顧客{n}")


class AttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Attempt

    contact = factory.SubFactory(ContactFactory)
    number = 1
