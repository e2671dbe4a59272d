"""The DEMO scenario's personas: the demo campaign's callees (pure, no server)."""

from __future__ import annotations

import datetime as dt
import json

from realtime.emulators.scenarios import DEMO, FunctionCall, ResponseRequest, Speech

ALL_TOOLS = frozenset(
    {"record_opt_out", "schedule_appointment", "save_call_outcome", "lookup_booking"}
)


def request(
    turn: int, instructions: str, *, tool_outputs=(), tools=ALL_TOOLS
) -> ResponseRequest:
    return ResponseRequest(
        trigger="turn",
        response_index=turn,
        turn_index=turn,
        instructions=None,
        session_instructions=instructions,
        tool_outputs=tool_outputs,
        session_tools=tools,
    )


def test_a_persona_is_picked_by_the_callee_name_in_the_instructions():
    """The name in the instructions picks the persona; none keeps the demo lines."""
    assert DEMO.persona("お客様は田中 次郎様です。").marker == "田中 次郎"
    assert DEMO.persona("受付のAIです。") is None
    assert DEMO.caller_transcript(1, "受付のAIです。") == DEMO.caller_transcripts[0]
    assert (
        DEMO.caller_transcript(1, "田中 次郎様")
        == "結構です。もう電話しないでください。"
    )


def test_the_refusing_callee_gets_an_opt_out_call_with_their_words():
    """Turn 1 of 田中 次郎: record_opt_out quoting the refusal; then the answer."""
    plan = DEMO.respond(request(1, "田中 次郎様へのご案内"))
    (call,) = plan.outputs
    assert isinstance(call, FunctionCall) and call.name == "record_opt_out"
    assert json.loads(call.arguments)["customer_words"].startswith("結構です")
    after = DEMO.respond(request(1, "田中 次郎様", tool_outputs=("call_1",)))
    (speech,) = after.outputs
    assert isinstance(speech, Speech) and "今後お電話はいたしません" in speech.text


def test_a_booking_is_dated_a_week_ahead():
    """{date+7} becomes a real date, so the booking is never in the past."""
    (call,) = DEMO.respond(request(1, "山田 太郎様")).outputs
    assert isinstance(call, FunctionCall) and call.name == "schedule_appointment"
    booked = dt.date.fromisoformat(json.loads(call.arguments)["date"])
    assert booked == dt.date.today() + dt.timedelta(days=7)


def test_a_persona_calls_only_a_tool_the_session_offers():
    """As the real model: without lookup_booking in the session (the MCP server's
    tools not added yet) the receptionist answers in words; with it, it calls it."""
    marker = "既存の予約の確認は予約システムの lookup_booking を"
    (said,) = DEMO.respond(request(1, marker, tools=frozenset())).outputs
    assert isinstance(said, Speech) and said.text == DEMO.replies[0]
    (call,) = DEMO.respond(request(1, marker)).outputs
    assert isinstance(call, FunctionCall) and call.name == "lookup_booking"
    assert json.loads(call.arguments) == {"phone_number": "09012345678"}
