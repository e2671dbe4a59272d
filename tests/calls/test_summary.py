"""After the call (F-76): the summary task against the fake Responses API.

Each path and status of a call's end, the retries (time faked: the task's
countdown is read, never waited), the failed extraction kept with its reason, the
cost added to the call's, the event sent once per end, and the re-run.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from agents.extraction_schema import SALES_SCHEMA
from callcenter.domain_events import call_summarized
from calls.models import CallSession, ExtractionStatus, TranscriptEntry
from calls.services import call_session_save_figures, call_session_transition
from calls.status import CallStatus
from calls.summary import tasks
from calls.summary.services import call_extraction_rerun, call_summary_attempt
from realtime.emulators.fake_summaries import FakeSummariesServer
from tests.agents.factories import AgentProfileFactory
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory
from tests.calls.summary_fakes import fake_responses_thread

pytestmark = pytest.mark.django_db

S = CallStatus
C = TranscriptEntry.Speaker.CUSTOMER
A = TranscriptEntry.Speaker.AI


@pytest.fixture
def fake(settings: Any) -> Iterator[FakeSummariesServer]:
    with fake_responses_thread() as server:
        settings.SUMMARY_OPENAI_BASE_URL = server.base_url
        settings.SUMMARY_MAX_ATTEMPTS = 3
        settings.SUMMARY_RETRY_DELAY_S = 5
        settings.SUMMARY_PRICES = {"input": 1.0, "output": 2.0}
        yield server


@pytest.fixture
def announced() -> Iterator[list[tuple[int, str]]]:
    seen: list[tuple[int, str]] = []

    def receiver(sender: Any, call: CallSession, extraction_status: str, **_: Any):
        seen.append((call.pk, extraction_status))

    call_summarized.connect(receiver, dispatch_uid="test-summary")
    yield seen
    call_summarized.disconnect(dispatch_uid="test-summary")


def ended_call(
    *lines: tuple[str, str],
    path: tuple[str, ...] = (S.AI_RESPONDING, S.COMPLETED),
    call_path: str = CallSession.Path.REALTIME,
    **kw,
) -> CallSession:
    call = CallSessionFactory(path=call_path, **kw)
    for offset, (speaker, text) in enumerate(lines):
        TranscriptEntryFactory(call=call, speaker=speaker, text=text, offset_ms=offset)
    for status in path:
        call_session_transition(call=call, to=status)
    return call


JA = (
    (A, "お電話ありがとうございます。"),
    (C, "田中と申します。エアコンの修理をお願いしたいです。"),
    (A, "承知しました。ご都合のよい日時はありますか。"),
    (C, "明日の10時でお願いします。電話番号は090-1234-5678です。"),
)


def test_the_end_of_a_call_enqueues_the_step_once_on_commit(
    summary_tasks: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    """The end commits first; only then is the task message sent (never on the way)."""
    call = CallSessionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        call_session_transition(call=call, to=S.AI_RESPONDING)
        call_session_transition(call=call, to=S.COMPLETED)
        call_session_transition(call=call, to=S.COMPLETED)  # a repeat: no-op
    assert summary_tasks == [{"call_id": call.pk, "announce": True}]


@pytest.mark.parametrize(
    ("direction", "path", "realtime"),
    [
        ("inbound", (S.AI_RESPONDING, S.COMPLETED), True),  # Realtime, completed
        ("inbound", (S.AI_RESPONDING, S.FAILED), True),  # failed after a caller line
        (  # handed off: the human finishes the call
            "inbound",
            (S.AI_RESPONDING, S.TRANSFERRING, S.HUMAN_CONNECTED, S.COMPLETED),
            True,
        ),
        ("outbound", (S.RINGING, S.AI_RESPONDING, S.COMPLETED), True),
        ("web", (S.AI_RESPONDING, S.COMPLETED), True),  # the browser channel
        ("inbound", (S.AI_RESPONDING, S.COMPLETED), False),  # legacy (Gather) path
    ],
)
def test_each_path_and_status_gets_a_summary_in_the_calls_language(
    fake: FakeSummariesServer,
    announced: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
    direction: str,
    path: tuple[str, ...],
    realtime: bool,
) -> None:
    agent = AgentProfileFactory(realtime_enabled=realtime)
    call = ended_call(
        *JA,
        path=path,
        call_path=CallSession.Path.REALTIME if realtime else CallSession.Path.LEGACY,
        direction=direction,
        agent=agent,
        organization=agent.organization,
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = call_summary_attempt(call_id=call.pk)
    assert outcome.status == "done"
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.DONE
    assert call.path == (
        CallSession.Path.REALTIME if realtime else CallSession.Path.LEGACY
    )
    assert call.summary.startswith("お客様の用件: 田中と申します")  # Japanese stays
    assert call.extraction["name"] == "田中"
    assert call.extraction["callback_number"] == "090-1234-5678"
    assert call.extraction["job_required"] is True
    assert call.extraction["appointment"].startswith("明日の10時")
    assert announced == [(call.pk, "done")]
    request = fake.requests[-1].body
    assert request["text"]["format"]["type"] == "json_schema"
    assert request["text"]["format"]["strict"] is True
    assert "[customer] 田中と申します" in request["input"]


def test_english_transcript_gives_an_english_summary(fake: FakeSummariesServer) -> None:
    call = ended_call(
        (C, "Hello, my name is Anna Smith. I need a quote for a repair."),
    )
    call_summary_attempt(call_id=call.pk)
    call.refresh_from_db()
    assert call.summary.startswith("The caller said: Hello, my name is Anna Smith")
    assert call.extraction["name"] == "Anna Smith"


def test_no_caller_line_is_skipped_and_announced_as_such(
    fake: FakeSummariesServer,
    announced: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A call nobody spoke on (or that never connected) asks the model nothing."""
    no_answer = ended_call(path=(S.NO_ANSWER,))
    ai_only = ended_call((A, "もしもし、聞こえますか。"))
    with django_capture_on_commit_callbacks(execute=True):
        assert call_summary_attempt(call_id=no_answer.pk).status == "skipped"
        assert call_summary_attempt(call_id=ai_only.pk).status == "skipped"
    assert fake.requests == []
    ai_only.refresh_from_db()
    assert ai_only.extraction_status == ExtractionStatus.SKIPPED
    assert announced == [(no_answer.pk, "skipped"), (ai_only.pk, "skipped")]


def test_usage_and_cost_are_added_to_the_calls_cost(fake: FakeSummariesServer) -> None:
    call = ended_call(*JA)
    call_session_save_figures(
        call=call,
        usage={"input_audio": 1_000_000},  # $32 of Realtime audio
        first_audio_ms=None,
        turn_latencies_ms=[],
        barge_in_count=0,
    )
    before = call.cost_usd
    call_summary_attempt(call_id=call.pk)
    call.refresh_from_db()
    assert call.summary_input_tokens > 0 and call.summary_output_tokens > 0
    expected = Decimal(
        str(
            round(
                (call.summary_input_tokens * 1.0 + call.summary_output_tokens * 2.0)
                / 1e6,
                6,
            )
        )
    )
    assert call.summary_cost_usd == expected
    assert call.cost_usd == before + expected
    # The bridge's figures saved late keep the summary's share.
    call_session_save_figures(
        call=call,
        usage={"input_audio": 1_000_000},
        first_audio_ms=None,
        turn_latencies_ms=[],
        barge_in_count=0,
    )
    call.refresh_from_db()
    assert call.cost_usd == before + expected


def test_model_errors_are_retried_with_back_off_then_kept_as_failed(
    fake: FakeSummariesServer,
    announced: list[tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """500s: tries 1 and 2 ask for a retry after 5 s then 10 s; try 3 gives up."""
    fake.fail_next(3, status=500)
    call = ended_call(*JA)
    scheduled: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.summarize_call, "apply_async", lambda **kw: scheduled.append(kw)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.summarize_call.run(call.pk) == "retry"
        assert scheduled[-1]["countdown"] == 5
        assert scheduled[-1]["kwargs"] == {"attempt": 2, "announce": True}
        call.refresh_from_db()
        assert call.extraction_status == ExtractionStatus.PENDING
        assert "HTTP 500" in call.extraction_error
        assert tasks.summarize_call.run(call.pk, attempt=2) == "retry"
        assert scheduled[-1]["countdown"] == 10
        assert tasks.summarize_call.run(call.pk, attempt=3) == "failed"
    assert len(scheduled) == 2
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.FAILED
    assert call.extraction_error.startswith(
        "3回中3回目: the text model answered HTTP 500"
    )
    assert call.extraction_attempts == 3
    assert announced == [(call.pk, "failed")]


def test_a_reply_failing_the_schema_is_retried_and_its_reason_kept(
    fake: FakeSummariesServer,
) -> None:
    fake.invalid_next(1)
    call = ended_call(*JA)
    outcome = call_summary_attempt(call_id=call.pk, attempt=1)
    assert outcome.status == "retry"
    assert "fails the schema" in outcome.reason
    call.refresh_from_db()
    assert "fails the schema" in call.extraction_error
    assert call.summary_input_tokens > 0  # the bad reply still cost tokens
    assert call_summary_attempt(call_id=call.pk, attempt=2).status == "done"
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.DONE
    assert call.extraction_error == ""


def test_an_unreachable_model_fails_with_the_reason(settings: Any) -> None:
    settings.SUMMARY_OPENAI_BASE_URL = "http://127.0.0.1:9/summaries/v1"
    settings.SUMMARY_MAX_ATTEMPTS = 1
    call = ended_call(*JA)
    assert call_summary_attempt(call_id=call.pk).status == "failed"
    call.refresh_from_db()
    assert "cannot reach the text model" in call.extraction_error


def test_a_redelivered_end_is_announced_once(
    fake: FakeSummariesServer,
    announced: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = ended_call(*JA)
    with django_capture_on_commit_callbacks(execute=True):
        call_summary_attempt(call_id=call.pk)
        assert call_summary_attempt(call_id=call.pk).status == "gone"
    assert announced == [(call.pk, "done")]
    assert len(fake.requests) == 1


def test_the_profiles_schema_constrains_the_output(fake: FakeSummariesServer) -> None:
    agent = AgentProfileFactory(extraction_schema=SALES_SCHEMA)
    call = ended_call(*JA, agent=agent, organization=agent.organization)
    call_summary_attempt(call_id=call.pk)
    call.refresh_from_db()
    assert set(call.extraction) == set(SALES_SCHEMA["properties"])
    assert call.extraction["interest"] == "high"
    assert (
        fake.requests[-1].body["text"]["format"]["schema"]["properties"]["fields"]
        == SALES_SCHEMA
    )


def test_a_loose_schema_is_sent_without_strict(fake: FakeSummariesServer) -> None:
    loose = {"type": "object", "properties": {"request": {"type": "string"}}}
    agent = AgentProfileFactory(extraction_schema=loose)
    call = ended_call(*JA, agent=agent, organization=agent.organization)
    assert call_summary_attempt(call_id=call.pk).status == "done"
    assert fake.requests[-1].body["text"]["format"]["strict"] is False


def test_rerun_queues_again_without_a_second_announcement(
    fake: FakeSummariesServer,
    announced: list[tuple[int, str]],
    summary_tasks: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = ended_call(*JA)
    with django_capture_on_commit_callbacks(execute=True):
        call_summary_attempt(call_id=call.pk)
    summary_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        call = call_extraction_rerun(call=call)
    assert call.extraction_status == ExtractionStatus.PENDING
    assert summary_tasks == [{"call_id": call.pk, "announce": False}]
    with django_capture_on_commit_callbacks(execute=True):
        assert call_summary_attempt(call_id=call.pk, announce=False).status == "done"
    assert announced == [(call.pk, "done")]
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.DONE
    assert len(fake.requests) == 2


def test_rerun_of_a_live_call_is_refused() -> None:
    from callcenter.errors import ApplicationError

    call = CallSessionFactory(status=S.AI_RESPONDING)
    with pytest.raises(ApplicationError, match="通話中です"):
        call_extraction_rerun(call=call)


def test_an_unexpected_error_is_counted_and_retried_not_left_pending(
    fake: FakeSummariesServer,
    monkeypatch: pytest.MonkeyPatch,
    announced: list[tuple[int, str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    call = ended_call(*JA)
    scheduled: list[dict[str, Any]] = []
    monkeypatch.setattr(
        tasks.summarize_call, "apply_async", lambda **kw: scheduled.append(kw)
    )

    def broken(**_: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tasks, "call_summary_attempt", broken)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.summarize_call.run(call.pk) == "retry"
        assert tasks.summarize_call.run(call.pk, attempt=3) == "failed"
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.FAILED
    assert "RuntimeError: disk full" in call.extraction_error
    assert announced == [(call.pk, "failed")]
    assert len(scheduled) == 1


def test_a_broken_job_rule_keeps_the_summary(
    fake: FakeSummariesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("no jobs today")

    monkeypatch.setattr("jobs.services.job_create_from_call", broken)
    call = ended_call(*JA)
    assert call_summary_attempt(call_id=call.pk).status == "done"
    call.refresh_from_db()
    assert call.extraction_status == ExtractionStatus.DONE and call.summary
