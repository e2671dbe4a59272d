"""Tool calls on the call's timeline (F-78): tool, server, ok/error, time, size."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from calls.models import CallEvent, CallSession
from calls.timeline import tool_call_summary

pytestmark = pytest.mark.django_db


def test_summary_of_http_mcp_and_builtin_tool_calls() -> None:
    assert (
        tool_call_summary(
            {
                "tool": "lookup_order",
                "source": "http",
                "server": "tools.example.com",
                "ok": True,
                "ms": 120,
                "output_bytes": 53,
            }
        )
        == "lookup_order @ tools.example.com: ok, 120 ms, 53 B"
    )
    assert (
        tool_call_summary(
            {
                "tool": "lookup_booking",
                "server": "booking",
                "ok": False,
                "error": "the tool answered HTTP 500",
                "ms": 12,
            }
        )
        == "lookup_booking @ booking: error (the tool answered HTTP 500), 12 ms"
    )
    # The bridge's built-in event shape: name, output, ms.
    assert (
        tool_call_summary(
            {
                "name": "end_call",
                "ok": False,
                "output": {"ok": False, "error": "no"},
                "ms": 3,
            }
        )
        == "end_call: error (no), 3 ms"
    )


def test_tool_call_shows_on_the_call_page(
    logged_in: Any, live_call: CallSession
) -> None:
    CallEvent.objects.create(
        call=live_call,
        type="tool-call",
        payload={
            "tool": "lookup_order",
            "source": "http",
            "server": "tools.example.com",
            "ok": True,
            "ms": 87,
            "output_bytes": 40,
        },
    )
    html = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert "lookup_order @ tools.example.com: ok, 87 ms, 40 B" in html
