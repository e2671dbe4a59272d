"""Job cards (F-77): work a call left for the business, from new to done."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from agents.models import Customer, Organization


class JobStatus(models.TextChoices):
    NEW = "new", _("new")
    ACCEPTED = "accepted", _("accepted")
    DONE = "done", _("done")
    CANCELED = "canceled", _("canceled")


# new → accepted → done | canceled; a new job may be canceled too.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.NEW: frozenset({JobStatus.ACCEPTED, JobStatus.CANCELED}),
    JobStatus.ACCEPTED: frozenset({JobStatus.DONE, JobStatus.CANCELED}),
    JobStatus.DONE: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class Job(models.Model):
    """One job card: made from a call's extraction, or by hand (API, admin)."""

    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="jobs",
        verbose_name=_("organisation"),
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        verbose_name=_("customer"),
    )
    call = models.ForeignKey(
        "calls.CallSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        verbose_name=_("call"),
    )
    title = models.CharField(_("title"), max_length=200)
    fields = models.JSONField(_("fields"), default=dict, blank=True)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=JobStatus.choices,
        default=JobStatus.NEW,
        db_index=True,
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        verbose_name=_("assignee"),
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("job")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "status"])]
        constraints = [
            # One card per call: a re-run of the extraction never makes a second.
            models.UniqueConstraint(
                fields=["call"],
                condition=models.Q(call__isnull=False),
                name="one_job_per_call",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"
