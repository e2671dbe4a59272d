"""Writes to campaigns: the status machine, the do-not-call list (F-63 … F-66).

Keyword-only arguments, one transaction each. Illegal status changes raise
ApplicationError 409 `illegal_status_transition`; a start whose opening lacks a
disclosure value raises 409 `disclosure_incomplete` naming what is missing.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import Operator, Organization
from agents.phones import normalize_phone
from callcenter.errors import ApplicationError, ErrorCode
from calls.campaigns.disclosure import disclosure_missing
from calls.campaigns.models import Campaign, Contact, DoNotCall
from calls.groups import campaign_monitor_group
from calls.models import CallSession
from notifications.hooks import campaign_completed_publish

log = logging.getLogger(__name__)

S = Campaign.Status
# status → the statuses it may move to (F-63: draft → running ⇄ paused → completed | canceled)
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.RUNNING, S.CANCELED}),
    S.RUNNING: frozenset({S.PAUSED, S.COMPLETED, S.CANCELED}),
    S.PAUSED: frozenset({S.RUNNING, S.COMPLETED, S.CANCELED}),
    S.COMPLETED: frozenset(),
    S.CANCELED: frozenset(),
}


def _illegal(campaign: Campaign, to: str) -> ApplicationError:
    return ApplicationError(
        f"A {campaign.status} campaign cannot become {to}.",
        code=ErrorCode.ILLEGAL_TRANSITION,
        http_status=409,
        details={"status": campaign.status, "to": to},
    )


def _locked(campaign_id: int) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign_id)


def _transition(campaign: Campaign, to: str) -> Campaign:
    if to not in TRANSITIONS[campaign.status]:
        raise _illegal(campaign, to)
    campaign.status = to
    fields = ["status", "updated_at"]
    now = timezone.now()
    if to == S.RUNNING and campaign.started_at is None:
        campaign.started_at = now
        fields.append("started_at")
    if to in (S.COMPLETED, S.CANCELED):
        campaign.finished_at = now
        fields.append("finished_at")
    campaign.save(update_fields=fields)
    transaction.on_commit(lambda: campaign_broadcast(campaign_id=campaign.pk))
    if to == S.COMPLETED:
        campaign_completed_publish(campaign=campaign)
    return campaign


def campaign_check_start(*, campaign: Campaign) -> None:
    """Raise 409 `disclosure_incomplete` unless the opening discloses all (F-66)."""
    missing = disclosure_missing(campaign)
    if missing:
        raise ApplicationError(
            "The opening must name the business, the caller and the product, and say "
            "it is a sales call; missing: " + ", ".join(missing) + ".",
            code=ErrorCode.DISCLOSURE_INCOMPLETE,
            http_status=409,
            details={"missing": missing},
        )


@transaction.atomic
def campaign_start(*, campaign: Campaign) -> Campaign:
    """draft → running, once the disclosure rule holds."""
    campaign = _locked(campaign.pk)
    if campaign.status != S.DRAFT:
        raise _illegal(campaign, S.RUNNING)
    campaign_check_start(campaign=campaign)
    return _transition(campaign, S.RUNNING)


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """running → paused: no new dials from the next tick on; live calls go on."""
    campaign = _locked(campaign.pk)
    if campaign.status != S.RUNNING:
        raise _illegal(campaign, S.PAUSED)
    return _transition(campaign, S.PAUSED)


@transaction.atomic
def campaign_resume(*, campaign: Campaign) -> Campaign:
    """paused → running."""
    campaign = _locked(campaign.pk)
    if campaign.status != S.PAUSED:
        raise _illegal(campaign, S.RUNNING)
    return _transition(campaign, S.RUNNING)


@transaction.atomic
def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Any open status → canceled: nothing more is dialled; live calls go on."""
    campaign = _locked(campaign.pk)
    return _transition(campaign, S.CANCELED)


@transaction.atomic
def campaign_complete(*, campaign: Campaign) -> Campaign:
    """running/paused → completed (the dialer, once every contact is final)."""
    campaign = _locked(campaign.pk)
    return _transition(campaign, S.COMPLETED)


EDITABLE = frozenset({S.DRAFT, S.PAUSED})


@transaction.atomic
def campaign_save(*, campaign: Campaign) -> Campaign:
    """Create a campaign (as a draft), or save edits to a draft or paused one.

    Validates like the model (`clean()`: days, window, retry results). Editing a
    running, completed or canceled campaign raises 409 `conflict`.
    """
    if campaign.pk is not None:
        current = _locked(campaign.pk)
        if current.status not in EDITABLE:
            raise ApplicationError(
                f"A {current.status} campaign cannot be edited; pause it first.",
                code=ErrorCode.CONFLICT,
                http_status=409,
                details={"status": current.status},
            )
        campaign.status = current.status
    else:
        campaign.status = S.DRAFT
    campaign.full_clean(exclude=["organization", "agent", "created_by"])
    campaign.save()
    if campaign.pk is not None:
        transaction.on_commit(lambda: campaign_broadcast(campaign_id=campaign.pk))
    return campaign


@transaction.atomic
def campaign_delete(*, campaign: Campaign) -> None:
    """Delete a draft campaign and its contacts; any other raises 409 `conflict`."""
    current = _locked(campaign.pk)
    if current.status != S.DRAFT:
        raise ApplicationError(
            f"A {current.status} campaign cannot be deleted; only a draft can.",
            code=ErrorCode.CONFLICT,
            http_status=409,
            details={"status": current.status},
        )
    current.delete()


def campaign_broadcast(*, campaign_id: int) -> None:
    """Send the campaign's progress to its page (group `monitor.campaign.<id>`)."""
    from calls.campaigns.selectors import campaign_progress

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        campaign = Campaign.objects.get(pk=campaign_id)
    except Campaign.DoesNotExist:
        return
    message: dict[str, Any] = {
        "type": "campaign.progress",
        "campaign_id": campaign.pk,
        **campaign_progress(campaign=campaign),
    }
    try:
        async_to_sync(layer.group_send)(campaign_monitor_group(campaign.pk), message)
    except Exception:  # a page hiccup must never break the dialer
        log.warning("campaign broadcast failed", exc_info=True)


# Do-not-call -----------------------------------------------------------------


def dnc_add(
    *,
    organization: Organization,
    phone: str,
    source: str,
    reason: str = "",
    call_id: int | None = None,
    created_by: Operator | None = None,
) -> DoNotCall:
    """Put a number on the organisation's list (idempotent) and stop dialling it.

    Pending and waiting contacts of the organisation's campaigns with that number
    become `opted-out` (source call) or `skipped-dnc` at once, so no later tick
    dials them. Raises ApplicationError 400 for a number that is not one.
    """
    try:
        e164 = normalize_phone(phone)
    except DjangoValidationError as exc:
        raise ApplicationError(
            "The request is not valid; see details.",
            code=ErrorCode.VALIDATION,
            http_status=400,
            details={"phone": exc.messages},
        ) from exc
    with transaction.atomic():
        try:
            with transaction.atomic():
                entry = DoNotCall.objects.create(
                    organization=organization,
                    phone=e164,
                    source=source,
                    reason=reason[:300],
                    call_id=call_id,
                    created_by=created_by,
                )
        except IntegrityError:
            entry = DoNotCall.objects.get(organization=organization, phone=e164)
        contact_status = (
            Contact.Status.OPTED_OUT
            if source == DoNotCall.Source.CALL
            else Contact.Status.SKIPPED_DNC
        )
        Contact.objects.filter(
            campaign__organization=organization,
            phone=e164,
            status__in=[Contact.Status.PENDING, Contact.Status.RETRY_WAIT],
        ).update(status=contact_status, updated_at=timezone.now())
    return entry


def call_party_number(*, call: CallSession) -> str:
    """The customer's number on a call: `to` when we dialled, `from` when they did."""
    if call.direction == CallSession.Direction.OUTBOUND:
        return call.to_number
    return call.from_number


@transaction.atomic
def dnc_add_from_call(
    *,
    call: CallSession,
    source: str,
    reason: str = "",
    phone: str = "",
    created_by: Operator | None = None,
) -> DoNotCall:
    """A refusal during a call (the agent's tool or an operator's button, F-65).

    Lists the customer's number (`phone`, else the call's other party) with this
    call, marks the campaign contact of the call `opted-out` (it is dialling or in
    the call, which dnc_add leaves alone) and records an `opt-out` call event.
    """
    from calls.services import call_event_record

    entry = dnc_add(
        organization=call.organization,
        phone=phone or call_party_number(call=call),
        source=source,
        reason=reason,
        call_id=call.pk,
        created_by=created_by,
    )
    contact_id = (
        Contact.objects.filter(attempt_rows__call_id=call.pk)
        .values_list("pk", flat=True)
        .first()
    )
    if contact_id is not None:
        Contact.objects.filter(pk=contact_id).update(
            status=Contact.Status.OPTED_OUT,
            outcome="opted-out",
            updated_at=timezone.now(),
        )
    call_event_record(
        call=call,
        type="opt-out",
        payload={
            "source": source,
            "dnc_id": entry.pk,
            "contact_id": contact_id,
            "reason": reason[:300],
        },
    )
    return entry


def dnc_import(
    *,
    organization: Organization,
    phones: Iterable[str],
    reason: str = "",
    created_by: Operator | None = None,
) -> tuple[int, list[str]]:
    """Bulk-add numbers with source `import`; return (listed, numbers refused).

    Each number goes through dnc_add (idempotent: one already listed counts as
    listed and keeps its original source); a number that does not parse is
    returned, not raised, so one bad line does not stop a list.
    """
    listed = 0
    refused: list[str] = []
    for raw in phones:
        text = (raw or "").strip()
        if not text:
            continue
        try:
            dnc_add(
                organization=organization,
                phone=unicodedata.normalize("NFKC", text),
                source=DoNotCall.Source.IMPORT,
                reason=reason,
                created_by=created_by,
            )
        except ApplicationError:
            refused.append(text)
            continue
        listed += 1
    return listed, refused


def dnc_remove(*, entry: DoNotCall) -> None:
    """Take a number off the list; contacts skipped for it stay as they are."""
    entry.delete()
