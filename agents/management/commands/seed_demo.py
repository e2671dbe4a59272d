"""Create the demo organisation, operator, agent and numbers; safe to run again.

Fixed values that docs and checks rely on: organisation "Demo"; operator `demo` /
password `demo` (local use only); inbound number +815012345678 routed to the demo
agent; handoff number +818070239355; the outbound sales agent 営業デモ that
`simulate_campaign` calls with; number +815012345679 routed to 受付デモ(従来経路),
the same receptionist with a Realtime share of 0 %: every call takes the legacy
Gather path (F-72, `simulate_call --legacy`); group "Supervisors" (permission
`calls.supervise_call`, F-75) with the demo operator in it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import (
    TOOL_NAMES,
    AgentProfile,
    Customer,
    Operator,
    Organization,
    PhoneNumber,
)

DEMO_ORG = "Demo"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
DEMO_INBOUND_NUMBER = "+815012345678"
DEMO_HANDOFF_NUMBER = "+818070239355"
DEMO_AGENT_NAME = "受付デモ"
DEMO_LEGACY_NUMBER = "+815012345679"
DEMO_LEGACY_AGENT_NAME = "受付デモ(従来経路)"

INSTRUCTIONS = """あなたは{{company_name}}の電話受付AIです。{{service_name}}についてのお問い合わせに、丁寧な日本語で簡潔にお答えください。
{{service_description}}
一度に話すのは二文までにしてください。お客様が担当者との会話を希望された場合は request_operator_handoff を使ってください。
予約の希望があれば日時とお名前を確認して schedule_appointment を使ってください。
既存の予約の確認は予約システムの lookup_booking を、電話番号でお調べください。"""

GREETING = "お電話ありがとうございます。{{company_name}}、{{self_introduction}}。ご用件をお伺いします。"

DEMO_SALES_AGENT_NAME = "営業デモ"
SALES_INSTRUCTIONS = """あなたは{{company_name}}の営業担当AIです。お電話先は{{customer_name}}様です。{{service_name}}をご案内しています。
{{service_description}}
一度に話すのは二文までにしてください。ご興味があれば来店予約を schedule_appointment で承り、通話の結果を save_call_outcome で記録してください。"""
SALES_GREETING = "{{customer_name}}様、今少しだけお時間よろしいでしょうか。"

APP_LABELS = ("agents", "calls")
SUPERVISORS_GROUP = "Supervisors"
SUPERVISE_PERMISSION = ("calls", "supervise_call")


def demo_mcp_servers() -> list[dict[str, Any]]:
    """The 予約システム on DEMO_MCP_PORT in demo mode; none with a real OpenAI key."""
    if not settings.DEMO_MODE:
        return []
    return [
        {
            "name": "booking",
            "url": settings.DEMO_MCP_URL,
            "headers": {},
            "allowed_tools": ["lookup_booking", "create_booking"],
            "timeout_s": 5.0,
        }
    ]


def supervisors_group() -> Group:
    """The "Supervisors" group, holding `calls.supervise_call` (F-75); idempotent."""
    group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
    app_label, codename = SUPERVISE_PERMISSION
    group.permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )
    return group


class Command(BaseCommand):
    help = "Create (or update) the demo data. Idempotent."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        org, _ = Organization.objects.get_or_create(name=DEMO_ORG)
        receptionist = {
            "instructions_template": INSTRUCTIONS,
            "greeting_template": GREETING,
            "company_name": "デモ商事",
            "service_name": "クラウド受付",
            "representative_name": "AI受付",
            "self_introduction": "AI受付担当でございます",
            "service_description": "クラウド受付は、電話の一次対応をAIが行うサービスです。",
            "voice": "marin",
            "speed": 1.0,
            "enabled_tools": list(TOOL_NAMES),
            "handoff_phone_number": DEMO_HANDOFF_NUMBER,
        }
        agent, _ = AgentProfile.objects.update_or_create(
            organization=org,
            name=DEMO_AGENT_NAME,
            # The demo's own MCP server (make run serves it in demo mode only).
            defaults={**receptionist, "mcp_servers": demo_mcp_servers()},
        )
        agent.full_clean()
        legacy, _ = AgentProfile.objects.update_or_create(
            organization=org,
            name=DEMO_LEGACY_AGENT_NAME,
            defaults={
                **receptionist,
                "rollout_percentage": 0,
                "legacy_say_voice": "Polly.Mizuki",
                "legacy_speech_model": "phone_call",
                "legacy_hints": "予約,営業時間,担当者",
            },
        )
        legacy.full_clean()
        sales, _ = AgentProfile.objects.update_or_create(
            organization=org,
            name=DEMO_SALES_AGENT_NAME,
            defaults={
                "instructions_template": SALES_INSTRUCTIONS,
                "greeting_template": SALES_GREETING,
                "ai_speaks_first": True,
                "company_name": "デモ商事",
                "service_name": "クラウド受付",
                "representative_name": "AI営業",
                "self_introduction": "営業担当でございます",
                "service_description": "クラウド受付は、電話の一次対応をAIが行うサービスです。",
                "voice": "marin",
                "speed": 1.0,
                "enabled_tools": list(TOOL_NAMES),
                "handoff_phone_number": DEMO_HANDOFF_NUMBER,
                "voicemail_message": "デモ商事でございます。改めてお電話いたします。",
            },
        )
        sales.full_clean()
        PhoneNumber.objects.update_or_create(
            number=DEMO_INBOUND_NUMBER,
            defaults={"organization": org, "agent": agent, "label": "デモ代表番号"},
        )
        PhoneNumber.objects.update_or_create(
            number=DEMO_LEGACY_NUMBER,
            defaults={
                "organization": org,
                "agent": legacy,
                "label": "デモ従来経路番号",
            },
        )
        Customer.objects.update_or_create(
            organization=org,
            phone_number="+819012345678",
            defaults={"name": "山田太郎", "context": {"notes": "デモ用の顧客です"}},
        )
        user = Operator.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            user = Operator(username=DEMO_USERNAME)
        user.organization = org
        user.is_staff = True
        user.is_superuser = False
        user.phone_number = DEMO_HANDOFF_NUMBER
        user.set_password(DEMO_PASSWORD)
        user.save()
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label__in=APP_LABELS).exclude(
                content_type__model="operator"
            )
        )
        user.groups.add(supervisors_group())
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: organisation '{org.name}', login {DEMO_USERNAME}/"
                f"{DEMO_PASSWORD}, inbound {DEMO_INBOUND_NUMBER} → agent '{agent.name}'."
            )
        )
