from __future__ import annotations

import factory

from calls.campaigns.models import Campaign, Contact, DoNotCall
from tests.agents.factories import AgentProfileFactory, OrganizationFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    organization = factory.SubFactory(OrganizationFactory)
    agent = factory.SubFactory(
        AgentProfileFactory, organization=factory.SelfAttribute("..organization")
    )
    name = factory.Sequence(lambda n: f"キャンペーン{n}")
    from_number = "+815012345678"
    business_name = "株式会社サンプル"
    caller_name = "佐藤"
    product = "光回線"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    campaign = factory.SubFactory(CampaignFactory)
    phone = factory.Sequence(lambda n: f"+8190{10000000 + n}")
    name = "山田"


class DoNotCallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DoNotCall

    organization = factory.SubFactory(OrganizationFactory)
    phone = "+819011112222"
    source = DoNotCall.Source.OPERATOR
