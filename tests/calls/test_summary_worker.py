"""The after-call step on a real Celery worker process (F-62, F-76).

The test process ends calls as the bridge does (the status change commits, then
the task message goes to a filesystem broker in a temporary folder); a `celery
worker` subprocess takes it, asks the fake Responses API (on a thread here) and
saves the summary, which the call page then shows. A model that answers 500 twice
is retried by the worker itself (back-off shortened by settings, not faked: the
retry is a real message with a countdown) and the call ends up summarised.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from kombu import Connection

from calls.models import CallSession, ExtractionStatus, TranscriptEntry
from calls.services import call_session_transition
from calls.status import CallStatus
from calls.summary.tasks import summarize_call
from jobs.models import Job
from realtime.emulators.fake_summaries import FakeSummariesServer
from tests.agents.factories import OperatorFactory
from tests.calls.campaigns.workers import CeleryProcesses
from tests.calls.factories import CallSessionFactory, TranscriptEntryFactory
from tests.calls.summary_fakes import fake_responses_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture
def fake() -> Iterator[FakeSummariesServer]:
    with fake_responses_thread() as server:
        yield server


@pytest.fixture
def worker(
    tmp_path: Path, fake: FakeSummariesServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CeleryProcesses]:
    procs = CeleryProcesses(
        tmp_path,
        SUMMARY_OPENAI_BASE_URL=fake.base_url,
        SUMMARY_RETRY_DELAY_S="0.5",
        SUMMARY_MAX_ATTEMPTS="3",
    )
    folder = str(tmp_path / "celery" / "queue")
    connection = Connection(
        "fsatomic://",
        transport_options={
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(tmp_path / "celery" / "control"),
        },
    )

    def enqueue(*, call_id: int, announce: bool = True) -> None:
        summarize_call.apply_async(
            args=[call_id], kwargs={"announce": announce}, connection=connection
        )

    monkeypatch.setattr("calls.summary.dispatch.summary_enqueue", enqueue)
    procs.start_worker()
    try:
        yield procs
    finally:
        procs.stop()
        connection.release()


def end_call_with_lines(*lines: str) -> CallSession:
    call = CallSessionFactory()
    for n, text in enumerate(lines):
        TranscriptEntryFactory(
            call=call, speaker=TranscriptEntry.Speaker.CUSTOMER, text=text, offset_ms=n
        )
    call_session_transition(call=call, to=CallStatus.AI_RESPONDING)
    call_session_transition(call=call, to=CallStatus.COMPLETED)
    return call


def wait_for_status(
    call: CallSession, procs: CeleryProcesses, within_s: float = 30
) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        call.refresh_from_db()
        if call.extraction_status != ExtractionStatus.PENDING:
            return call.extraction_status
        time.sleep(0.1)
    pytest.fail("no summary in time\n" + procs.logs())


def test_a_worker_summarises_an_ended_call_and_the_page_shows_it(
    worker: CeleryProcesses, fake: FakeSummariesServer, client: Any
) -> None:
    call = end_call_with_lines("エアコンの修理をお願いします。", "明日の10時で。")
    assert wait_for_status(call, worker) == ExtractionStatus.DONE, worker.logs()
    assert call.summary.startswith("お客様の用件: エアコンの修理をお願いします。")
    assert Job.objects.filter(call=call).exists()
    client.force_login(OperatorFactory(organization=call.organization))
    page = client.get(reverse("calls:detail", args=[call.pk])).content.decode()
    assert call.summary in page and 'data-extraction-status="done"' in page


def test_the_worker_retries_a_failing_model_until_it_answers(
    worker: CeleryProcesses, fake: FakeSummariesServer
) -> None:
    fake.fail_next(2, status=500)
    call = end_call_with_lines("見積もりをお願いします。")
    assert wait_for_status(call, worker) == ExtractionStatus.DONE, worker.logs()
    assert call.extraction_attempts == 3
    assert [r.status for r in fake.requests] == [500, 500, 200]
