"""The call page's summary card (F-76), and the fragment its script polls."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from calls.models import CallSession
from calls.selectors import call_get


def display_value(value: Any) -> str:
    """An extracted value as text: lists joined, booleans as ✓ / ✗, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, list | dict):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "、".join(value)
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def summary_context(call: CallSession) -> dict[str, Any]:
    """What `calls/_summary.html` needs beside the call."""
    from jobs.selectors import job_for_call

    extraction = call.extraction if isinstance(call.extraction, dict) else {}
    return {
        "extraction_items": [(k, display_value(v)) for k, v in extraction.items()],
        "job": job_for_call(call_id=call.pk),
    }


@login_required
@require_GET
def call_summary_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    """The summary card alone (the call page fetches it while pending)."""
    try:
        call = call_get(user=request.user, call_id=pk)
    except CallSession.DoesNotExist:
        raise Http404("No such call") from None
    return render(
        request, "calls/_summary.html", {"call": call, **summary_context(call)}
    )
