"""Tools added to a live session (issue 18): one session.update, kept on reconnect."""

from __future__ import annotations

import json

from realtime.protocol.bridge_state import BridgeState, UpdateSession
from realtime.protocol.openai_events import FunctionTool, SessionConfig

BUILTIN = FunctionTool("end_call", "終える", {"type": "object", "properties": {}})
LOOKUP = FunctionTool(
    "lookup_booking",
    "予約を調べる",
    {"type": "object", "properties": {"booking_id": {"type": "string"}}},
)
CREATE = FunctionTool("create_booking", "登録", {"type": "object", "properties": {}})


def names(action: UpdateSession) -> list[str]:
    return [t["name"] for t in json.loads(action.to_json())["session"]["tools"]]


def test_added_tools_go_out_in_one_session_update_with_the_builtins():
    state = BridgeState(session=SessionConfig(instructions="x", tools=(BUILTIN,)))
    (first,) = state.on_model_connected()
    assert names(first) == ["end_call"]
    (update,) = state.add_tools([LOOKUP, CREATE])
    assert isinstance(update, UpdateSession)
    assert names(update) == ["end_call", "lookup_booking", "create_booking"]
    payload = json.loads(update.to_json())["session"]
    assert payload["instructions"] == "x"  # the whole session, not only the tools
    # Names already there add nothing.
    assert state.add_tools([LOOKUP, BUILTIN]) == []


def test_a_reconnect_keeps_the_added_tools():
    state = BridgeState(session=SessionConfig(tools=(BUILTIN,)))
    state.on_model_connected()
    state.add_tools([LOOKUP])
    actions = state.on_model_reconnected([])
    (update,) = [a for a in actions if isinstance(a, UpdateSession)]
    assert names(update) == ["end_call", "lookup_booking"]
