"""The call page's summary card (F-76): each status shown, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from calls.models import ExtractionStatus
from calls.status import CallStatus
from tests.calls.factories import CallSessionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "extraction_status": ExtractionStatus.DONE,
                "summary": "お客様は修理を希望。",
                "extraction": {"job_required": False, "objections": ["高い", "忙しい"]},
            },
            ["お客様は修理を希望。", "✗", "高い、忙しい"],
        ),
        (
            {
                "extraction_status": ExtractionStatus.FAILED,
                "extraction_error": "3回中3回目: the text model answered HTTP 500",
            },
            ["要約を作成できませんでした。", "the text model answered HTTP 500"],
        ),
        (
            {"extraction_status": ExtractionStatus.SKIPPED},
            ["お客様の発言がないため要約はありません。"],
        ),
        (
            {
                "extraction_status": ExtractionStatus.PENDING,
                "extraction_error": "3回中1回目: timeout",
            },
            ["要約を作成しています…", "3回中1回目: timeout"],
        ),
        (  # whatever JSON a schema allowed, shown as text
            {
                "extraction_status": ExtractionStatus.DONE,
                "extraction": {"nested": {"a": [1, {"b": None}]}},
            },
            ['{"a": [1, {"b": null}]}'],
        ),
    ],
)
def test_each_status_is_shown(
    logged_in: Any, org: Any, fields: dict[str, Any], expected: list[str]
) -> None:
    call = CallSessionFactory(organization=org, status=CallStatus.COMPLETED, **fields)
    for url in (
        reverse("calls:detail", args=[call.pk]),
        reverse("calls:summary", args=[call.pk]),
    ):
        response = logged_in.get(url)
        assert response.status_code == 200
        page = response.content.decode().replace("&quot;", '"')
        for text in expected:
            assert text in page, (url, text)


def test_a_live_call_says_it_is_summarised_at_the_end(
    logged_in: Any, live_call: Any
) -> None:
    page = logged_in.get(reverse("calls:detail", args=[live_call.pk])).content.decode()
    assert "通話の終了後に要約を作成します。" in page
    assert "call_summary.js" in page


def test_another_organisations_card_is_404(logged_in: Any, foreign_call: Any) -> None:
    assert (
        logged_in.get(reverse("calls:summary", args=[foreign_call.pk])).status_code
        == 404
    )
