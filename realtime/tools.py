"""Function tools the agent may call (F-21): a registry of async tools with JSON schemas.

Each tool gets a `ToolContext` (the call it serves, scoped to one organisation) and the
parsed arguments, and returns a JSON-serialisable dict that goes back to the model as
the `function_call_output`. Expected failures (bad date, unknown customer) are returned
as `{"ok": false, "error": …}` so the model can say so; the bridge turns exceptions and
time-outs into the same shape, so a failing tool never stalls the call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import TOOL_NAMES, Appointment
from agents.phones import normalize_phone
from agents.selectors import customer_find
from callcenter.db import db_sync_to_async
from calls.campaigns.models import DoNotCall
from calls.campaigns.refusal import Kind, refusal_kind
from calls.campaigns.services import call_party_number, dnc_add_from_call
from calls.models import CallSession
from calls.services import call_event_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolContext:
    call_id: int
    organization_id: int
    caller_number: str = ""


@dataclass(frozen=True, slots=True)
class ToolResult:
    output: dict[str, Any]
    # Side effects the bridge carries out after the output is sent.
    hang_up_after_playback: bool = False
    handoff_reason: str | None = None


ToolFunc = Callable[[ToolContext, dict[str, Any]], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: ToolFunc = field(repr=False)

    def schema(self) -> dict[str, Any]:
        """The tool as the Realtime session's `tools` entry."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


REGISTRY: dict[str, Tool] = {}


def tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> Callable[[ToolFunc], ToolFunc]:
    """Register an async tool under `name` with a JSON-schema object of parameters."""

    def register(func: ToolFunc) -> ToolFunc:
        REGISTRY[name] = Tool(
            name=name,
            description=description,
            parameters={
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
            func=func,
        )
        return func

    return register


def tools_for(enabled: list[str]) -> list[Tool]:
    """The registered tools an agent profile enables, in registry order."""
    return [t for name, t in REGISTRY.items() if name in set(enabled)]


async def tool_run(
    *,
    name: str,
    arguments_json: str,
    enabled: tuple[str, ...] | list[str],
    ctx: ToolContext,
    timeout_s: float,
) -> ToolResult:
    """Run one tool call as the model asked for it; never raises (but cancellation).

    An unknown or disabled tool, arguments that are not a JSON object, a time-out
    or an exception all become an `{"ok": false, "error": …}` output the model can
    read. Shared by the Realtime bridge and the legacy path (F-21, F-72).
    """
    tool = REGISTRY.get(name) if name in enabled else None
    if tool is None:
        return ToolResult(output={"ok": False, "error": f"unknown tool: {name}"})
    try:
        args = json.loads(arguments_json or "{}")
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        return await asyncio.wait_for(tool.func(ctx, args), timeout_s)
    except TimeoutError:
        return ToolResult(output={"ok": False, "error": "tool timed out"})
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("tool %s failed", name, extra={"call_id": ctx.call_id})
        return ToolResult(output={"ok": False, "error": f"tool failed: {exc}"[:300]})


def fail(message: str) -> ToolResult:
    return ToolResult(output={"ok": False, "error": message})


@tool(
    "request_operator_handoff",
    "お客様が人間の担当者との会話を希望した場合、またはAIで対応できない場合に担当者へ引き継ぐ。",
    {"reason": {"type": "string", "description": "引き継ぐ理由"}},
    ["reason"],
)
async def request_operator_handoff(
    ctx: ToolContext, args: dict[str, Any]
) -> ToolResult:
    reason = str(args.get("reason", "")).strip() or "customer request"
    return ToolResult(
        output={"ok": True, "message": "担当者に引き継ぎます。"}, handoff_reason=reason
    )


def _customer_info(ctx: ToolContext, phone_number: str) -> ToolResult:
    try:
        number = normalize_phone(phone_number)
    except ValidationError:
        return fail(f"電話番号の形式が正しくありません: {phone_number}")
    customer = customer_find(organization_id=ctx.organization_id, phone_number=number)
    if customer is None:
        return ToolResult(output={"ok": True, "found": False})
    upcoming = [
        {"date": a.date.isoformat(), "time": a.time.strftime("%H:%M"), "name": a.name}
        for a in customer.appointments.filter(date__gte=timezone.localdate())[:5]
    ]
    return ToolResult(
        output={
            "ok": True,
            "found": True,
            "name": customer.name,
            "context": customer.context,
            "appointments": upcoming,
        }
    )


@tool(
    "get_customer_info",
    "電話番号から顧客情報(氏名、メモ、予約)を調べる。",
    {"phone_number": {"type": "string", "description": "顧客の電話番号"}},
    ["phone_number"],
)
async def get_customer_info(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    phone = str(args.get("phone_number") or ctx.caller_number)
    return await db_sync_to_async(_customer_info)(ctx, phone)


def _schedule(ctx: ToolContext, date: str, time: str, name: str) -> ToolResult:
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        return fail(f"日付はYYYY-MM-DD形式で指定してください: {date}")
    try:
        at = dt.time.fromisoformat(time)
    except ValueError:
        return fail(f"時刻はHH:MM形式で指定してください: {time}")
    if not name.strip():
        return fail("予約のお名前が必要です。")
    when = timezone.make_aware(dt.datetime.combine(day, at))
    if when < timezone.now():
        return fail("過去の日時は予約できません。")
    call = CallSession.objects.select_related("customer").get(pk=ctx.call_id)
    appointment = Appointment.objects.create(
        organization_id=ctx.organization_id,
        customer=call.customer,
        call=call,
        date=day,
        time=at,
        name=name.strip(),
    )
    call_event_record(
        call=call,
        type="appointment",
        payload={"appointment_id": appointment.pk, "date": date, "time": time},
    )
    return ToolResult(
        output={
            "ok": True,
            "appointment_id": appointment.pk,
            "date": day.isoformat(),
            "time": at.strftime("%H:%M"),
            "name": appointment.name,
        }
    )


@tool(
    "schedule_appointment",
    "予約を登録する。日付はYYYY-MM-DD、時刻はHH:MM(24時間)。",
    {
        "date": {"type": "string", "description": "YYYY-MM-DD"},
        "time": {"type": "string", "description": "HH:MM"},
        "name": {"type": "string", "description": "予約者のお名前"},
    },
    ["date", "time", "name"],
)
async def schedule_appointment(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    return await db_sync_to_async(_schedule)(
        ctx,
        str(args.get("date", "")),
        str(args.get("time", "")),
        str(args.get("name", "")),
    )


@tool(
    "end_call",
    "会話が終わったら、別れの挨拶をしてから通話を終える。",
    {"reason": {"type": "string", "description": "終了の理由"}},
    ["reason"],
)
async def end_call(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    return ToolResult(
        output={"ok": True, "message": "Say a short goodbye; the call ends after it."},
        hang_up_after_playback=True,
    )


def _save_outcome(ctx: ToolContext, outcome: str, notes: str) -> ToolResult:
    if not outcome.strip():
        return fail("outcome is required")
    updated = CallSession.objects.filter(
        pk=ctx.call_id, organization_id=ctx.organization_id
    ).update(outcome=outcome.strip()[:100], outcome_notes=notes)
    if not updated:
        return fail("call not found")
    return ToolResult(output={"ok": True})


@tool(
    "save_call_outcome",
    "通話の結果(例: 予約成立、資料送付、見込みなし)とメモを記録する。",
    {
        "outcome": {"type": "string", "description": "結果"},
        "notes": {"type": "string", "description": "メモ"},
    },
    ["outcome"],
)
async def save_call_outcome(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    return await db_sync_to_async(_save_outcome)(
        ctx, str(args.get("outcome", "")), str(args.get("notes", ""))
    )


NOT_A_REFUSAL = (
    "お客様の言葉は今後の電話のお断りではありません(例: 今は忙しい、家族に相談)。"
    "登録はしていません。ご都合のよい日時を伺い、改めてお電話することをご提案ください。"
)


def _opt_out(ctx: ToolContext, words: str, reason: str) -> ToolResult:
    call = (
        CallSession.objects.select_related("organization")
        .filter(pk=ctx.call_id, organization_id=ctx.organization_id)
        .first()
    )
    if call is None:
        return fail("call not found")
    kind = refusal_kind(words)
    if kind is not Kind.REFUSAL:
        call_event_record(
            call=call,
            type="opt-out-declined",
            payload={"words": words[:300], "kind": str(kind)},
        )
        return ToolResult(output={"ok": False, "error": NOT_A_REFUSAL})
    if not (ctx.caller_number or call_party_number(call=call)):
        return fail("この通話の相手の電話番号が分かりません。")
    dnc_add_from_call(
        call=call,
        source=DoNotCall.Source.CALL,
        reason=(reason or words)[:300],
        phone=ctx.caller_number,
    )
    return ToolResult(
        output={
            "ok": True,
            "message": "今後お電話しないよう登録しました。お詫びとお礼を短く述べて、"
            "通話を終えてください。",
        }
    )


@tool(
    "record_opt_out",
    "お客様が今後の電話(勧誘)をはっきり断ったときだけ呼ぶ。電話番号を発信禁止リストに"
    "登録する。「今は忙しい」「家族に相談」「また今度」「後で」は断りではない。",
    {
        "customer_words": {
            "type": "string",
            "description": "お客様が実際に言った言葉(そのまま)",
        },
        "reason": {"type": "string", "description": "補足(任意)"},
    },
    ["customer_words"],
)
async def record_opt_out(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    words = str(args.get("customer_words", "")).strip()
    if not words:
        return fail("customer_words is required: the customer's own words.")
    return await db_sync_to_async(_opt_out)(
        ctx, words, str(args.get("reason", "")).strip()
    )


assert set(REGISTRY) == set(TOOL_NAMES), "agents.models.TOOL_NAMES must list every tool"
