"""Campaigns, their contacts and dial attempts, and the do-not-call list (F-63, F-65)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from agents.models import AgentProfile, Operator, Organization

DEFAULT_OPENING = (
    "{{business_name}}の{{caller_name}}と申します。"
    "{{product}}のご案内でお電話いたしました。"
)
RETRYABLE_RESULTS = ("busy", "no-answer", "failed", "machine")
# What an operator sets on a campaign (F-67): the form and the API edit these.
CAMPAIGN_SETTINGS_FIELDS = (
    "name",
    "agent",
    "from_number",
    "time_zone",
    "days",
    "window_start",
    "window_end",
    "max_concurrent",
    "calls_per_second",
    "max_attempts",
    "retry_delay_seconds",
    "retry_on",
    "machine_action",
    "business_name",
    "caller_name",
    "product",
    "opening",
)


def contact_prompt_values(*, name: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A contact's prompt values: its columns, and its name as `customer_name`."""
    values = dict(variables)
    if name:
        values["customer_name"] = name
    return values


def default_days() -> list[int]:
    return [1, 2, 3, 4, 5]


def default_retry_on() -> list[str]:
    return ["busy", "no-answer"]


class Campaign(models.Model):
    """A list of people to call with one agent, inside a calling window and limits."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        RUNNING = "running", _("running")
        PAUSED = "paused", _("paused")
        COMPLETED = "completed", _("completed")
        CANCELED = "canceled", _("canceled")

    class MachineAction(models.TextChoices):
        HANGUP = "hangup", _("hang up")
        VOICEMAIL = "voicemail", _("leave the voicemail message")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="campaigns"
    )
    name = models.CharField(_("name"), max_length=200)
    agent = models.ForeignKey(
        AgentProfile, on_delete=models.PROTECT, related_name="campaigns"
    )
    from_number = models.CharField(_("caller number"), max_length=32)
    time_zone = models.CharField(_("time zone"), max_length=64, default="Asia/Tokyo")
    # ISO weekdays, 1 = Monday … 7 = Sunday.
    days = models.JSONField(_("calling days"), default=default_days)
    window_start = models.TimeField(_("window start"), default=dt.time(9, 0))
    window_end = models.TimeField(_("window end"), default=dt.time(20, 0))
    max_concurrent = models.PositiveIntegerField(
        _("max concurrent calls"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(500)],
    )
    calls_per_second = models.FloatField(
        _("calls per second"),
        default=1.0,
        validators=[MinValueValidator(0.01), MaxValueValidator(100)],
    )
    max_attempts = models.PositiveSmallIntegerField(
        _("max attempts"),
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
    )
    retry_delay_seconds = models.PositiveIntegerField(
        _("retry delay (s)"), default=1800, validators=[MaxValueValidator(7 * 86400)]
    )
    # Which attempt results are retried: a subset of RETRYABLE_RESULTS.
    retry_on = models.JSONField(_("retry on"), default=default_retry_on)
    machine_action = models.CharField(
        _("answering machine"),
        max_length=12,
        choices=MachineAction.choices,
        default=MachineAction.HANGUP,
    )
    # The opening disclosure (特定商取引法 第16条, F-66).
    business_name = models.CharField(_("business name"), max_length=200, blank=True)
    caller_name = models.CharField(_("caller name"), max_length=200, blank=True)
    product = models.CharField(_("product"), max_length=200, blank=True)
    opening = models.TextField(_("opening"), default=DEFAULT_OPENING)

    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    created_by = models.ForeignKey(
        Operator, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The dialer's pacing: no create is started before this instant (F-64 CPS).
    next_dial_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("campaign")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "status"])]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if any(d not in range(1, 8) for d in self.days or []) or not self.days:
            errors["days"] = _("Days are ISO weekdays 1 (Monday) … 7 (Sunday).")
        start, end = self.window_start, self.window_end
        if start is not None and end is not None and start >= end:
            errors["window_end"] = _("The window must end after it starts.")
        if any(r not in RETRYABLE_RESULTS for r in self.retry_on or []):
            errors["retry_on"] = _(
                "Retry on a subset of busy, no-answer, failed, machine."
            )
        if errors:
            raise ValidationError(errors)


class Contact(models.Model):
    """One person a campaign calls."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DIALING = "dialing", _("dialing")
        IN_CALL = "in-call", _("in call")
        RETRY_WAIT = "retry-wait", _("waiting to retry")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")
        SKIPPED_DNC = "skipped-dnc", _("skipped (do not call)")
        OPTED_OUT = "opted-out", _("opted out")
        EXHAUSTED = "exhausted", _("attempts exhausted")

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="contacts"
    )
    phone = models.CharField(_("phone"), max_length=32)
    name = models.CharField(_("name"), max_length=200, blank=True)
    # Every other CSV column: prompt variables ({{column}}).
    variables = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # Due time for the next dial (pending / retry-wait); null = now.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=100, blank=True)
    # The CSV line it came from (1 is the header).
    source_line = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("contact")
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "phone"], name="campaign_contact_phone_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["campaign", "status", "next_attempt_at"],
                name="contact_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name or '-'} {self.phone}"

    def prompt_values(self) -> dict[str, Any]:
        """See contact_prompt_values()."""
        return contact_prompt_values(name=self.name, variables=self.variables or {})


class Attempt(models.Model):
    """One dial of a contact: committed before Twilio is asked (F-64)."""

    class State(models.TextChoices):
        # Row committed, REST create not known to have succeeded.
        DIALING = "dialing", _("dialing")
        # Twilio has the call (CallSid known); callbacks drive it on.
        PLACED = "placed", _("placed")
        ANSWERED = "answered", _("answered")
        FINISHED = "finished", _("finished")

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="attempt_rows"
    )
    number = models.PositiveSmallIntegerField()
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.DIALING, db_index=True
    )
    call = models.OneToOneField(
        "calls.CallSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="campaign_attempt",
    )
    call_sid = models.CharField(max_length=64, unique=True, null=True, blank=True)
    twilio_status = models.CharField(max_length=20, blank=True)
    # Highest status-callback SequenceNumber applied: older ones change nothing.
    last_sequence = models.IntegerField(default=-1)
    answered_by = models.CharField(max_length=32, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True)
    # busy / no-answer / failed / machine / canceled, or the agent's outcome.
    result = models.CharField(max_length=20, blank=True)
    outcome = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    rest_tries = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    dialed_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("dial attempt")
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "number"], name="attempt_contact_number_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.contact} #{self.number}"


class DoNotCall(models.Model):
    """A number no campaign of the organisation may dial (特定商取引法 第17条, F-65)."""

    class Source(models.TextChoices):
        CALL = "call", _("refused in a call")
        OPERATOR = "operator", _("operator")
        IMPORT = "import", _("import")

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="do_not_call"
    )
    phone = models.CharField(_("phone"), max_length=32)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    call = models.ForeignKey(
        "calls.CallSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_by = models.ForeignKey(
        Operator, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("do-not-call entry")
        verbose_name_plural = _("do-not-call list")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "phone"], name="dnc_org_phone_unique"
            )
        ]

    def __str__(self) -> str:
        return self.phone
