from __future__ import annotations

import datetime as dt

import factory

from calls.campaigns.models import Campaign, Contact
from tests.agents.factories import AgentProfileFactory, OrganizationFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    """A running campaign, open every day around the clock in Asia/Tokyo."""

    class Meta:
        model = Campaign

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(
        AgentProfileFactory, organization=factory.SelfAttribute("..organization")
    )
    name = factory.Sequence(lambda n: f"キャンペーン{n}")
    from_number = "+815012345678"
    time_zone = "Asia/Tokyo"
    days = [1, 2, 3, 4, 5, 6, 7]
    window_start = dt.time(0, 0)
    window_end = dt.time(23, 59, 59)
    max_concurrent = 5
    calls_per_second = 100.0
    max_attempts = 3
    retry_delay_seconds = 60
    retry_on = ["busy", "no-answer"]
    business_name = "テスト株式会社"
    caller_name = "山田"
    product = "光回線"
    status = Campaign.Status.RUNNING


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    campaign = factory.SubFactory(CampaignFactory)
    phone = factory.Sequence(lambda n: f"+8190{10000000 + n}")
    name = factory.Sequence(lambda n: f"顧客{n}")
    variables = {"plan": "ゴールド"}
