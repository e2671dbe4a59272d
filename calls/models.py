"""A call and its timeline: transcript, events, recordings (F-08, F-09)."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from agents.models import AgentProfile, Customer, Organization, PhoneNumber
from calls.status import LIVE, CallStatus


def new_stream_token() -> str:
    return secrets.token_urlsafe(24)


class ExtractionStatus(models.TextChoices):
    """Where the after-call summary and extraction stand (F-76)."""

    PENDING = "pending", pgettext_lazy("extraction status", "pending")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")
    SKIPPED = "skipped", _("skipped")


class CallSession(models.Model):
    """One call, from the first webhook (or the browser's offer) to the final status."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", _("inbound")
        OUTBOUND = "outbound", _("outbound")
        WEB = "web", _("web")  # the browser's voice channel over WebRTC (F-74)

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="calls"
    )
    agent = models.ForeignKey(
        AgentProfile,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    phone_number = models.ForeignKey(
        PhoneNumber,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )

    class Path(models.TextChoices):
        REALTIME = "realtime", _("Realtime")
        LEGACY = "legacy", _("legacy (Gather)")

    direction = models.CharField(max_length=10, choices=Direction.choices)
    # Which speech path the call took (F-72): the Realtime bridge, or Twilio's
    # <Gather> with a text model.
    path = models.CharField(
        max_length=10, choices=Path.choices, default=Path.REALTIME, db_index=True
    )
    # Legacy path: turns in a row that heard nothing or where the text model failed.
    legacy_misses = models.PositiveSmallIntegerField(default=0, editable=False)
    from_number = models.CharField(_("from"), max_length=32, blank=True)
    to_number = models.CharField(_("to"), max_length=32, blank=True)
    status = models.CharField(
        max_length=20,
        choices=CallStatus.choices,
        default=CallStatus.INITIATED,
        db_index=True,
    )
    twilio_call_sid = models.CharField(
        max_length=64, unique=True, null=True, blank=True
    )
    stream_sid = models.CharField(max_length=64, blank=True)
    # One-time secret the stream must present in start.customParameters (F-15).
    stream_token = models.CharField(
        max_length=64, default=new_stream_token, editable=False
    )
    stream_token_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    openai_session_id = models.CharField(max_length=64, blank=True)
    # Per-call prompt values: customer and campaign contact fields (F-04).
    contact_variables = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    answered_by = models.CharField(_("answered by (AMD)"), max_length=32, blank=True)
    # Liveness for the reaper (F-52): the bridge touches it while it runs.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # Usage and cost (F-26).
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    input_cached_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))

    # Latency figures (F-27).
    first_audio_ms = models.PositiveIntegerField(
        _("start to first AI audio (ms)"), null=True, blank=True
    )
    turn_latencies_ms = models.JSONField(default=list, blank=True)
    barge_in_count = models.PositiveIntegerField(default=0)

    # Handoff (F-29).
    handoff_trigger = models.CharField(max_length=30, blank=True)
    handoff_reason = models.TextField(blank=True)
    handoff_requested_by = models.ForeignKey(
        "agents.Operator",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    handoff_agent_number = models.CharField(max_length=32, blank=True)
    handoff_agent_call_sid = models.CharField(max_length=64, blank=True)
    handoff_conference_name = models.CharField(max_length=80, blank=True)
    handoff_connected_at = models.DateTimeField(null=True, blank=True)
    # Supervision (F-75): the supervisor who took the call over; null = the AI holds it.
    held_by = models.ForeignKey(
        "agents.Operator",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("held by"),
    )
    # What the AI is told when the caller comes back to it (F-33, F-34).
    ai_resume_note = models.TextField(blank=True)
    # Resume (F-68): when the stream was lost with the call still on the AI (cleared
    # when the new stream is claimed), and resumes in a row whose stream never came.
    stream_lost_at = models.DateTimeField(null=True, blank=True, editable=False)
    stream_resume_failures = models.PositiveSmallIntegerField(default=0, editable=False)

    # Outcome (F-49).
    outcome = models.CharField(max_length=100, blank=True)
    outcome_notes = models.TextField(blank=True)

    # After the call (F-76): the text model's summary and the profile schema's fields.
    summary = models.TextField(_("summary"), blank=True)
    extraction = models.JSONField(_("extracted fields"), default=dict, blank=True)
    extraction_status = models.CharField(
        _("extraction status"),
        max_length=10,
        choices=ExtractionStatus.choices,
        default=ExtractionStatus.PENDING,
    )
    extraction_error = models.TextField(_("extraction error"), blank=True)
    extraction_attempts = models.PositiveSmallIntegerField(default=0)
    summarized_at = models.DateTimeField(null=True, blank=True)
    summary_input_tokens = models.PositiveIntegerField(default=0)
    summary_output_tokens = models.PositiveIntegerField(default=0)
    summary_cost_usd = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(0)
    )

    class Meta:
        verbose_name = _("call")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "status"])]
        permissions = [("supervise_call", "Can supervise live calls")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.direction} {self.from_number}→{self.to_number}"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE

    @property
    def duration_s(self) -> float | None:
        if not self.answered_at:
            return None
        end = self.ended_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        return (end - self.answered_at).total_seconds()


class TranscriptEntry(models.Model):
    """One utterance of the call (F-09)."""

    class Speaker(models.TextChoices):
        CUSTOMER = "customer", _("customer")
        AI = "ai", _("AI")
        SYSTEM = "system", _("system")
        AGENT = "agent", _("agent")

    call = models.ForeignKey(
        CallSession, on_delete=models.CASCADE, related_name="transcript"
    )
    speaker = models.CharField(max_length=10, choices=Speaker.choices)
    text = models.TextField()
    item_id = models.CharField(_("OpenAI item id"), max_length=64, blank=True)
    offset_ms = models.PositiveIntegerField(_("offset in the call (ms)"), default=0)
    interrupted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("transcript entry")
        verbose_name_plural = _("transcript entries")
        ordering = ["call", "offset_ms", "id"]

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:60]}"


class CallEvent(models.Model):
    """A step on the call's timeline: webhook, stream start, barge-in, handoff step… (F-09)."""

    call = models.ForeignKey(
        CallSession, on_delete=models.CASCADE, related_name="events"
    )
    type = models.CharField(max_length=50, db_index=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("call event")
        ordering = ["call", "created_at", "id"]

    def __str__(self) -> str:
        return self.type


class Recording(models.Model):
    """Audio of the call (F-09): Twilio's, the conference's, or the bridge's own."""

    class Source(models.TextChoices):
        TWILIO_CALL = "twilio-call", _("Twilio call")
        CONFERENCE = "conference", _("conference")
        BRIDGE = "bridge", _("bridge")

    class Status(models.TextChoices):
        IN_PROGRESS = "in-progress", _("in progress")
        COMPLETED = "completed", _("completed")
        ABSENT = "absent", _("absent")
        FAILED = "failed", _("failed")

    call = models.ForeignKey(
        CallSession, on_delete=models.CASCADE, related_name="recordings"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    recording_sid = models.CharField(max_length=64, blank=True)
    url = models.URLField(max_length=500, blank=True)
    file = models.FileField(upload_to="recordings/%Y/%m/", blank=True)
    duration_s = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.COMPLETED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("recording")
        ordering = ["call", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["recording_sid"],
                condition=~models.Q(recording_sid=""),
                name="unique_recording_sid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.recording_sid or self.file.name}"


# Campaign models live in their own package; importing them registers them in `calls`.
from calls.campaigns.models import (  # noqa: E402, F401
    Attempt,
    Campaign,
    Contact,
    DoNotCall,
)
