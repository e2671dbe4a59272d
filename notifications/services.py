"""Writes of the notifications app (F-77): endpoints, events, deliveries.

- `endpoint_save`: validates the URL (SSRF guard at save) and the event names.
- `event_publish`: one `Event` and a `Delivery` per subscribed active endpoint; the
  deliveries are handed to the delivery task once the rows are committed.
- `deliveries_dispatch`: lease due deliveries and enqueue them (publish, sweep, send
  again); `delivery_attempt`: the task's body (one POST, then the outcome).
- Back-off: 30 s (WEBHOOK_FIRST_RETRY_SECONDS) after the first failure, doubling, at most an hour apart, for 24 h
  from the event (or from the last "send again"); a 410 disables the endpoint. When a
  retry gets through, the endpoint's other waiting retries are due at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import sender
from notifications.models import EVENT_TYPES, Delivery, Event, WebhookEndpoint
from notifications.signing import signature_header
from notifications.urlsafety import UnsafeURL, resolve_target, url_parts

log = logging.getLogger(__name__)

MAX_INTERVAL = dt.timedelta(hours=1)
RETRY_WINDOW = dt.timedelta(hours=24)
# A running attempt holds its delivery at least this long (more than the 10 s timeout).
MIN_SEND_LEASE = dt.timedelta(seconds=sender.TIMEOUT_S + 5)
SWEEP_BATCH = 1000

Enqueue = Callable[[int, str], None]
Send = Callable[..., sender.Outcome]


def _default_enqueue(delivery_id: int, lease: str) -> None:
    from notifications.tasks import enqueue_delivery

    enqueue_delivery(delivery_id, lease)


def enqueue_lease() -> dt.timedelta:
    """How long an enqueued (or running) delivery is left to its message before the
    sweep hands it on again: `WEBHOOK_LEASE_SECONDS`."""
    return dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)


def send_lease() -> dt.timedelta:
    return max(enqueue_lease(), MIN_SEND_LEASE)


def backoff(attempts: int) -> dt.timedelta:
    """Wait after the `attempts`-th failed attempt: 30 s, 60 s, 120 s … at most 1 h
    (the first wait is `WEBHOOK_FIRST_RETRY_SECONDS`)."""
    first = dt.timedelta(seconds=settings.WEBHOOK_FIRST_RETRY_SECONDS)
    return min(first * 2 ** max(attempts - 1, 0), MAX_INTERVAL)


# --- endpoints ------------------------------------------------------------------


def url_check(url: str) -> None:
    """Raise ValidationError if `url` may not receive webhooks (after DNS).

    With ALLOW_PRIVATE_URLS on any http(s) URL will do: nothing is resolved (a name
    that does not resolve yet fails its sends, not its save).
    """
    try:
        if settings.ALLOW_PRIVATE_URLS:
            url_parts(url)
        else:
            resolve_target(url, allow_private=False)
    except UnsafeURL as exc:
        raise ValidationError({"url": [str(exc)]}) from exc


def events_check(events: Any) -> list[str]:
    """The subscribed event names, or ValidationError naming the unknown ones."""
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValidationError({"events": ["A list of event names is required."]})
    if not events:
        raise ValidationError({"events": ["Subscribe to at least one event."]})
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationError(
            {
                "events": [
                    f"Unknown event(s): {', '.join(unknown)}; known: "
                    + ", ".join(EVENT_TYPES)
                    + "."
                ]
            }
        )
    return [e for e in EVENT_TYPES if e in events]


@transaction.atomic
def endpoint_save(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Validate and save; switching an endpoint on clears why it was off."""
    endpoint.events = events_check(endpoint.events)
    url_check(endpoint.url)
    if endpoint.active:
        endpoint.disabled_reason = ""
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def endpoint_disable(*, endpoint_id: int, reason: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        active=False, disabled_reason=reason[:300], updated_at=timezone.now()
    )


# --- events ---------------------------------------------------------------------


def event_body(event: Event) -> bytes:
    """The delivery body: the same bytes on every attempt."""
    return json.dumps(
        {
            "id": event.public_id,
            "type": event.type,
            "created": int(event.created_at.timestamp()),
            "data": event.data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def event_publish(
    *,
    organization_id: int,
    type: str,
    data: dict[str, Any],
    enqueue: Enqueue | None = None,
) -> Event | None:
    """Record the event for the endpoints subscribed to it; None if there are none."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(
            organization_id=organization_id, active=True
        )
        if type in e.events
    ]
    if not endpoints:
        return None
    with transaction.atomic():
        event = Event.objects.create(
            organization_id=organization_id, type=type, data=data
        )
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                endpoint=e,
                event=event,
                next_try_at=event.created_at,
                retry_from=event.created_at,
            )
            for e in endpoints
        )
        ids = [d.pk for d in deliveries]
        transaction.on_commit(lambda: deliveries_dispatch(ids=ids, enqueue=enqueue))
    return event


def event_publish_on_commit(
    *, organization_id: int | None, type: str, data: Callable[[], dict[str, Any]]
) -> None:
    """Publish once the current transaction commits; never raise into the caller."""
    if organization_id is None:
        return

    def publish() -> None:
        try:
            event_publish(organization_id=organization_id, type=type, data=data())
        except Exception:
            log.exception("webhook event %s not published", type)

    transaction.on_commit(publish)


# --- deliveries -----------------------------------------------------------------


def deliveries_dispatch(
    *,
    ids: Iterable[int],
    now: dt.datetime | None = None,
    enqueue: Enqueue | None = None,
) -> list[int]:
    """Lease each due, unleased delivery of `ids` and enqueue it; return those sent."""
    now = now or timezone.now()
    enqueue = enqueue or _default_enqueue
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    sent: list[int] = []
    for delivery_id in ids:
        lease = uuid.uuid4().hex
        claimed = (
            Delivery.objects.filter(
                free, pk=delivery_id, state=Delivery.State.PENDING, next_try_at__lte=now
            ).update(lease=lease, lease_until=now + enqueue_lease())
            == 1
        )
        if not claimed:
            continue
        try:
            enqueue(delivery_id, lease)
        except Exception:  # the broker is away: the sweep tries again after the lease
            log.exception("delivery %s not enqueued", delivery_id)
            continue
        sent.append(delivery_id)
    return sent


def deliveries_sweep(
    *, now: dt.datetime | None = None, enqueue: Enqueue | None = None
) -> list[int]:
    """Enqueue every due delivery no live lease holds (retries, lost messages)."""
    now = now or timezone.now()
    due = list(
        Delivery.objects.filter(state=Delivery.State.PENDING, next_try_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_try_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    return deliveries_dispatch(ids=due, now=now, enqueue=enqueue)


def delivery_headers(
    *, delivery: Delivery, attempt: int, body: bytes, now: dt.datetime
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "callcenter-webhooks/1",
        "X-Callcenter-Event": delivery.event.type,
        "X-Callcenter-Delivery": f"dlv_{delivery.pk}_{attempt}",
        "X-Callcenter-Signature": signature_header(
            delivery.endpoint.secret, int(now.timestamp()), body
        ),
    }


def _finish(delivery_id: int, lease: str, **fields: Any) -> None:
    Delivery.objects.filter(pk=delivery_id, lease=lease).update(
        lease="", lease_until=None, **fields
    )


def delivery_attempt(
    *,
    delivery_id: int,
    lease: str,
    now: Callable[[], dt.datetime] = timezone.now,
    send: Send = sender.post,
) -> str:
    """Send one delivery once if `lease` still holds it; return what happened."""
    started = now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, lease=lease, state=Delivery.State.PENDING
    ).update(
        attempts=F("attempts") + 1,
        lease_until=started + send_lease(),
        last_attempt_at=started,
    )
    if not claimed:
        return "skipped"
    delivery = Delivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.active:
        _finish(
            delivery_id,
            lease,
            state=Delivery.State.FAILED,
            next_try_at=None,
            last_error=f"Not sent: the endpoint is off. {endpoint.disabled_reason}"[
                :300
            ],
        )
        return "endpoint-off"
    body = event_body(delivery.event)
    headers = delivery_headers(
        delivery=delivery, attempt=delivery.attempts, body=body, now=started
    )
    outcome = send(
        url=endpoint.url,
        body=body,
        headers=headers,
        allow_private=settings.ALLOW_PRIVATE_URLS,
    )
    ended = now()
    answer = {
        "last_status": outcome.status,
        "last_response": outcome.excerpt,
        "last_error": outcome.error[:300],
    }
    if outcome.ok:
        _finish(
            delivery_id,
            lease,
            state=Delivery.State.DELIVERED,
            delivered_at=ended,
            next_try_at=None,
            **answer,
        )
        if delivery.attempts > 1:
            # A retry got through: the endpoint is back. Its other waiting retries
            # are due now (the sweep hands them out), not at their back-off time.
            Delivery.objects.filter(
                endpoint_id=endpoint.pk,
                state=Delivery.State.PENDING,
                attempts__gt=0,
                next_try_at__gt=ended,
            ).update(next_try_at=ended)
        return "delivered"
    if outcome.status == 410:
        reason = (
            f"Disabled at {ended:%Y-%m-%d %H:%M:%S} UTC: the receiver answered "
            f"410 Gone to {delivery.event.public_id}."
        )
        endpoint_disable(endpoint_id=endpoint.pk, reason=reason)
        _finish(
            delivery_id,
            lease,
            state=Delivery.State.FAILED,
            next_try_at=None,
            **{**answer, "last_error": "410 Gone: the endpoint is now off."},
        )
        log.warning("webhook endpoint %s disabled: 410", endpoint.pk)
        return "gone"
    if outcome.refused:
        _finish(
            delivery_id, lease, state=Delivery.State.FAILED, next_try_at=None, **answer
        )
        return "refused"
    deadline = (delivery.retry_from or delivery.event.created_at) + RETRY_WINDOW
    if ended >= deadline:
        error = (outcome.error or f"HTTP {outcome.status}") + " Gave up after 24 h."
        _finish(
            delivery_id,
            lease,
            state=Delivery.State.FAILED,
            next_try_at=None,
            **{**answer, "last_error": error[:300]},
        )
        return "gave-up"
    next_try = min(ended + backoff(delivery.attempts), deadline)
    _finish(delivery_id, lease, next_try_at=next_try, **answer)
    return "retry"


def delivery_send_again(
    *, delivery: Delivery, enqueue: Enqueue | None = None
) -> Delivery:
    """Send a delivery again now (any state), with a fresh 24 h of retries.

    The event keeps its id: a receiver that already has it can drop the copy.
    """
    now = timezone.now()
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            state=Delivery.State.PENDING,
            next_try_at=now,
            retry_from=now,
            delivered_at=None,
            lease="",
            lease_until=None,
        )
        transaction.on_commit(
            lambda: deliveries_dispatch(ids=[delivery.pk], enqueue=enqueue)
        )
    delivery.refresh_from_db()
    return delivery
