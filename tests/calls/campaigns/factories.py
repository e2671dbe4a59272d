from __future__ import annotations

import datetime as dt

import factory

from calls.campaigns.models import Campaign, Contact, DoNotCall
from tests.agents.factories import AgentProfileFactory, OrganizationFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    """A draft campaign, open every day around the clock in Asia/Tokyo."""

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
    business_name = "株式会社サンプル"
    caller_name = "佐藤"
    product = "光回線"


class RunningCampaignFactory(CampaignFactory):
    """A campaign the dialer works on."""

    status = Campaign.Status.RUNNING


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    campaign = factory.SubFactory(CampaignFactory)
    phone = factory.Sequence(lambda n: f"+8190{10000000 + n}")
    name = "山田"


class DialerContactFactory(ContactFactory):
    """A contact of a running campaign, with a prompt variable."""

    campaign = factory.SubFactory(RunningCampaignFactory)
    name = factory.Sequence(lambda n: f"顧客{n}")
    variables = {"plan": "ゴールド"}


class DoNotCallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DoNotCall

    organization = factory.SubFactory(OrganizationFactory)
    phone = "+819011112222"
    source = DoNotCall.Source.OPERATOR
