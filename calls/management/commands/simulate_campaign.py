"""`manage.py simulate_campaign`: a small outbound campaign through the emulator (F-67).

Needs the running service with its Celery worker and beat (`make run`, demo mode,
starts them and the emulators) and shares its database, like `simulate_call`. It:

1. scripts the Twilio emulator's far ends (`/_emulator/far-ends`): 山田 and 佐藤
   answer and talk, 高橋's number is an answering machine, 鈴木 is busy on the first
   call and answers the retry, 田中 answers and refuses further calls;
2. creates a campaign for the demo sales agent 営業デモ (every day, 00:00–23:59 in
   Asia/Tokyo, 2 calls at once, 1 call a second, busy and no-answer retried after
   5 s) and imports its contacts from a Shift_JIS CSV with two bad rows, printing
   the import's row report;
3. starts it and prints each attempt as it ends and the progress, until the
   campaign completes; then the results (one row per attempt) and the do-not-call
   list. Run it again: 田中, who said no, is rejected at import (`dnc`).

The fake model plays each callee by name (`realtime.emulators.scenarios.DEMO`
personas): a booking, a brochure, a refusal (`record_opt_out`), a postponement.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections
from django.utils import timezone

from agents.models import AgentProfile, Organization
from agents.phones import mask_phone
from callcenter import env as E
from calls.campaigns.importing import contacts_import
from calls.campaigns.models import Attempt, Campaign, Contact, DoNotCall
from calls.campaigns.selectors import FINAL_CONTACT_STATUSES, campaign_progress
from calls.campaigns.services import campaign_start

DEMO_ORG = "Demo"
DEMO_SALES_AGENT = "営業デモ"
DEMO_CALLER_ID = "+815012345678"
POLL_S = 0.5
START_HINT = (
    "Start the service first, in another terminal: `make run` (no OPENAI_API_KEY: demo "
    "mode, which also starts the emulators, a Celery worker and beat), then run this "
    "command again (`--emulator` for another emulator address)."
)


@dataclass(frozen=True, slots=True)
class DemoCallee:
    name: str
    phone: str  # as a spreadsheet would hold it
    e164: str
    plan: str
    far_end: dict[str, Any] | None  # None: a sequence (see far_end_body)


def _talk(turns: int) -> list[dict[str, Any]]:
    """The callee's script: hear the opening out, answer `turns` times, hang up."""
    steps: list[dict[str, Any]] = [
        {"wait_audio": True, "ms": 200, "timeout_s": 30},
        {"wait_quiet_ms": 900, "timeout_s": 60},
    ]
    for turn in range(turns):
        steps += [
            {"speak_ms": 1300 + 200 * turn},
            {"wait_audio": True, "ms": 200, "timeout_s": 30},
            {"wait_quiet_ms": 900, "timeout_s": 60},
        ]
    return [*steps, {"hang_up": True}]


CALLEES = (
    DemoCallee(
        "山田 太郎",
        "090-1111-0001",
        "+819011110001",
        "ゴールド",
        {"behaviour": "answer", "ring_s": 2.0, "script": _talk(2)},
    ),
    DemoCallee(
        "佐藤 花子",
        "０９０－１１１１－０００２",  # full-width, as typed in Excel
        "+819011110002",
        "シルバー",
        {"behaviour": "answer", "ring_s": 1.0, "script": _talk(1)},
    ),
    DemoCallee(
        "高橋 留守",
        "09011110003",
        "+819011110003",
        "シルバー",
        {"behaviour": "machine", "ring_s": 1.5},
    ),
    DemoCallee("鈴木 一郎", "+81 90 1111 0004", "+819011110004", "ゴールド", None),
    DemoCallee(
        "田中 次郎",
        "090(1111)0005",
        "+819011110005",
        "ブロンズ",
        {"behaviour": "answer", "ring_s": 1.0, "script": _talk(1)},
    ),
)


def far_end_body() -> dict[str, Any]:
    """The emulator's far ends for the demo callees (鈴木: busy, then answers)."""
    body: dict[str, Any] = {"far_ends": {}, "sequences": {}}
    for callee in CALLEES:
        if callee.far_end is not None:
            body["far_ends"][callee.e164] = callee.far_end
    suzuki = next(c for c in CALLEES if c.far_end is None)
    body["sequences"][suzuki.e164] = [
        {"behaviour": "busy", "ring_s": 1.0},
        {"behaviour": "answer", "ring_s": 1.0, "script": _talk(1)},
    ]
    return body


def contacts_csv() -> bytes:
    """The contact list as Excel in Japan saves it: Shift_JIS, with two bad rows."""
    lines = ["phone,name,plan"]
    lines += [f"{c.phone},{c.name},{c.plan}" for c in CALLEES]
    lines += ["03-0000,番号 間違い,ゴールド", "090-1111-0001,山田 太郎(重複),ゴールド"]
    return ("\r\n".join(lines) + "\r\n").encode("cp932")


class Command(BaseCommand):
    help = (
        "Run a small outbound campaign against the running service through the Twilio "
        "emulator; print its progress and results."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--emulator",
            default=f"http://127.0.0.1:{E.get_int('DEMO_TWILIO_PORT')}",
            help="the Twilio emulator (default http://127.0.0.1:$DEMO_TWILIO_PORT)",
        )
        parser.add_argument(
            "--timeout", type=float, default=300.0, help="give up after (seconds)"
        )
        parser.add_argument(
            "--no-dial-within",
            type=float,
            default=30.0,
            help="fail if nothing was dialled within this many seconds",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            self._run(options)
        finally:
            close_old_connections()

    def _say(self, line: str = "") -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _run(self, options: dict[str, Any]) -> None:
        emulator = options["emulator"].rstrip("/")
        try:
            reply = httpx.post(
                f"{emulator}/_emulator/far-ends", json=far_end_body(), timeout=5
            )
        except httpx.TransportError as exc:
            raise CommandError(
                f"The Twilio emulator at {emulator} is not answering ({exc}). "
                + START_HINT
            ) from exc
        if reply.status_code != 200:
            raise CommandError(f"The emulator refused the far ends: {reply.text}")
        campaign = self._create_campaign()
        self._say(
            f"Campaign #{campaign.pk} 「{campaign.name}」 (agent {campaign.agent})"
        )
        report = contacts_import(campaign=campaign, fileobj=io.BytesIO(contacts_csv()))
        self._say(f"Imported {report.accepted} contacts (Shift_JIS CSV); rejected:")
        for row in report.rejected:
            self._say(
                f"  line {row['line']}: {row['phone']} — {row['reason']} "
                f"({row['detail']})"
            )
        if report.accepted == 0:
            raise CommandError("No contact to call.")
        campaign_start(campaign=campaign)
        self._say("Started; the worker dials on beat's next tick.\n")
        self._watch(campaign, options)
        campaign.refresh_from_db()
        self._results(campaign)
        open_contacts = Contact.objects.filter(campaign=campaign).exclude(
            status__in=FINAL_CONTACT_STATUSES
        )
        if campaign.status != Campaign.Status.COMPLETED or open_contacts.exists():
            raise CommandError(
                f"The campaign did not complete within {options['timeout']:.0f} s "
                f"(status {campaign.status})."
            )

    def _create_campaign(self) -> Campaign:
        try:
            organization = Organization.objects.get(name=DEMO_ORG)
            agent = AgentProfile.objects.get(
                organization=organization, name=DEMO_SALES_AGENT
            )
        except (Organization.DoesNotExist, AgentProfile.DoesNotExist) as exc:
            raise CommandError(
                "No demo data: run `python manage.py seed_demo` (make run does)."
            ) from exc
        stamp = timezone.localtime().strftime("%m/%d %H:%M:%S")
        return Campaign.objects.create(
            organization=organization,
            name=f"デモ一斉コール {stamp}",
            agent=agent,
            from_number=settings.TWILIO_FROM_NUMBER or DEMO_CALLER_ID,
            time_zone="Asia/Tokyo",
            days=[1, 2, 3, 4, 5, 6, 7],
            window_start=dt.time(0, 0),
            window_end=dt.time(23, 59),
            max_concurrent=2,
            calls_per_second=1.0,
            max_attempts=2,
            retry_delay_seconds=5,
            retry_on=["busy", "no-answer"],
            machine_action=Campaign.MachineAction.VOICEMAIL,
            business_name="デモ商事",
            caller_name="AI営業の佐々木",
            product="クラウド受付",
        )

    def _watch(self, campaign: Campaign, options: dict[str, Any]) -> None:
        started = time.monotonic()
        shown: set[tuple[int, str]] = set()
        last_line = ""
        while True:
            campaign.refresh_from_db()
            attempts = list(
                Attempt.objects.filter(contact__campaign=campaign)
                .select_related("contact")
                .order_by("pk")
            )
            elapsed = time.monotonic() - started
            for attempt in attempts:
                key = (attempt.pk, attempt.state)
                if key in shown:
                    continue
                shown.add(key)
                self._say(f"[{elapsed:5.1f} s] {_attempt_line(attempt)}")
            progress = campaign_progress(campaign=campaign)
            line = _progress_line(progress)
            if line != last_line:
                self._say(f"[{elapsed:5.1f} s] {line}")
                last_line = line
            if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELED):
                return
            if not attempts and elapsed > options["no_dial_within"]:
                raise CommandError(
                    f"Nothing was dialled within {options['no_dial_within']:.0f} s: "
                    "is the Celery worker running with beat? " + START_HINT
                )
            if elapsed > options["timeout"]:
                return
            close_old_connections()
            time.sleep(POLL_S)

    def _results(self, campaign: Campaign) -> None:
        self._say("\nResults (one row per attempt):")
        self._say(
            f"  {'name':<10} {'phone':<14} # {'result':<10} {'answered_by':<15} "
            f"{'s':>3}  outcome"
        )
        for attempt in (
            Attempt.objects.filter(contact__campaign=campaign)
            .select_related("contact")
            .order_by("contact__pk", "number")
        ):
            contact = attempt.contact
            self._say(
                f"  {contact.name:<10} {mask_phone(contact.phone):<14} "
                f"{attempt.number} {attempt.result or attempt.state:<10} "
                f"{attempt.answered_by or '-':<15} {attempt.duration or 0:>3}  "
                f"{attempt.outcome or '-'}"
            )
        self._say("\nContacts:")
        for contact in Contact.objects.filter(campaign=campaign).order_by("pk"):
            self._say(
                f"  {contact.name:<10} {contact.status:<12} "
                f"attempts {contact.attempts}  {contact.outcome or ''}"
            )
        entries = DoNotCall.objects.filter(organization=campaign.organization)
        self._say(f"\nDo-not-call list ({entries.count()}):")
        for entry in entries:
            self._say(
                f"  {mask_phone(entry.phone)}  {entry.source}  {entry.reason or ''}"
            )
        self._say(f"\nCampaign #{campaign.pk}: {campaign.status}.")


def _attempt_line(attempt: Attempt) -> str:
    contact = attempt.contact
    head = f"{contact.name} {mask_phone(contact.phone)} attempt {attempt.number}"
    if attempt.state == Attempt.State.DIALING:
        return f"{head}: dialling"
    if attempt.state == Attempt.State.PLACED:
        return f"{head}: placed ({attempt.call_sid or '?'})"
    if attempt.state == Attempt.State.ANSWERED:
        return f"{head}: answered{_by(attempt)}"
    outcome = f", outcome {attempt.outcome}" if attempt.outcome else ""
    return f"{head}: {attempt.result or 'finished'}{_by(attempt)}{outcome}"


def _by(attempt: Attempt) -> str:
    return f" by {attempt.answered_by}" if attempt.answered_by else ""


def _progress_line(progress: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(progress["counts"].items()))
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(progress["outcomes"].items()))
    line = f"progress {progress['progress']:>3}% ({progress['status']}): {counts}"
    return f"{line}; outcomes: {outcomes}" if outcomes else line
