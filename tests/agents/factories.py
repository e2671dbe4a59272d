from __future__ import annotations

import factory

from agents.models import AgentProfile, Customer, Operator, Organization, PhoneNumber


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"組織{n}")


class OperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Operator
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"operator{n}")
    organization = factory.SubFactory(OrganizationFactory)
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def save_after(obj, create, extracted, **kwargs):  # type: ignore[no-untyped-def]
        if create:
            obj.save()


class AgentProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentProfile

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"エージェント{n}")
    instructions_template = (
        "{{company_name}}の受付です。{{service_name}}をご案内します。"
    )
    greeting_template = "お電話ありがとうございます。{{company_name}}です。"
    service_name = "テストサービス"
    handoff_phone_number = "+818070239355"
    enabled_tools = [
        "request_operator_handoff",
        "get_customer_info",
        "schedule_appointment",
        "end_call",
        "save_call_outcome",
    ]


class PhoneNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PhoneNumber

    organization = factory.SubFactory(OrganizationFactory)
    number = factory.Sequence(lambda n: f"+8150{12340000 + n}")
    agent = factory.SubFactory(
        AgentProfileFactory, organization=factory.SelfAttribute("..organization")
    )


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    organization = factory.SubFactory(OrganizationFactory)
    phone_number = factory.Sequence(lambda n: f"+8190{12340000 + n}")
    name = factory.Sequence(lambda n: f"顧客{n}")
