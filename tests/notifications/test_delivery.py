"""Deliveries (F-77): signature checked by the documented recipe, the exact
headers and body, retries with back-off (time faked), the same event id on every
attempt, 410 turning the endpoint off, redirects and timeouts as failures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from notifications import sender, services
from notifications.models import Delivery, Event
from notifications.services import deliveries_sweep, delivery_attempt, event_publish
from tests.notifications.conftest import Inline
from tests.notifications.receiver import Receiver

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def publish(org: Any, inline: Inline, capture: Any, **data: Any) -> Event:
    with capture(execute=True):
        event = event_publish(
            organization_id=org.pk,
            type="call.completed",
            data={"call_id": 7, "status": "completed", "summary": "予約の確認", **data},
            enqueue=inline,
        )
    assert event is not None
    return event


def test_signed_delivery_verified_by_the_documented_recipe(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    event = publish(org, inline, django_capture_on_commit_callbacks)
    assert inline.outcomes == ["delivered"]
    [got] = receiver.requests
    assert got.verified
    assert got.headers["X-Callcenter-Event"] == "call.completed"
    delivery = Delivery.objects.get()
    assert got.headers["X-Callcenter-Delivery"] == f"dlv_{delivery.pk}_1"
    assert got.headers["Content-Type"] == "application/json"
    t = int(got.headers["X-Callcenter-Signature"].split(",")[0].removeprefix("t="))
    assert abs(t - timezone.now().timestamp()) < 5
    body = got.event
    assert body == {
        "id": event.public_id,
        "type": "call.completed",
        "created": int(event.created_at.timestamp()),
        "data": {"call_id": 7, "status": "completed", "summary": "予約の確認"},
    }
    assert event.public_id.startswith("evt_")
    assert "予約の確認".encode() in got.body  # not \u-escaped
    assert delivery.state == Delivery.State.DELIVERED
    assert delivery.attempts == 1 and delivery.last_status == 200


def test_a_wrong_secret_fails_the_recipe(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    endpoint.secret = "another_secret_entirely_xx"
    endpoint.save()
    publish(org, inline, django_capture_on_commit_callbacks)
    [got] = receiver.requests
    assert not got.verified
    verify = receiver.verify
    header = got.headers["X-Callcenter-Signature"]
    assert verify("another_secret_entirely_xx", header, got.body)
    assert not verify("another_secret_entirely_xx", header, got.body + b" ")
    t = header.split(",")[0].removeprefix("t=")
    old = header.replace(f"t={t}", f"t={int(t) - 301}")
    assert not verify("another_secret_entirely_xx", old, got.body)  # replay refused


def test_retries_back_off_and_keep_the_event_id(
    org, endpoint, receiver: Receiver, django_capture_on_commit_callbacks
):
    receiver.script = [500, 503, 502]
    clock = Clock()
    queued = Inline(run=False)
    publish(org, queued, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    waits = []
    for _ in range(4):
        [(delivery_id, lease)] = queued.calls
        queued.calls.clear()
        outcome = delivery_attempt(delivery_id=delivery_id, lease=lease, now=clock)
        delivery.refresh_from_db()
        if outcome == "delivered":
            break
        assert outcome == "retry"
        wait = (delivery.next_try_at - clock.now).total_seconds()
        waits.append(wait)
        # Not due a second early; due at the time.
        clock.advance(wait - 1)
        assert deliveries_sweep(now=clock.now, enqueue=queued) == []
        clock.advance(1)
        assert deliveries_sweep(now=clock.now, enqueue=queued) == [delivery.pk]
    assert waits == [30.0, 60.0, 120.0]
    assert delivery.state == Delivery.State.DELIVERED
    assert delivery.attempts == 4
    ids = {r.event["id"] for r in receiver.requests}
    assert len(receiver.requests) == 4 and len(ids) == 1
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # the same bytes on every attempt
    attempts = [r.headers["X-Callcenter-Delivery"] for r in receiver.requests]
    assert attempts == [f"dlv_{delivery.pk}_{n}" for n in (1, 2, 3, 4)]
    assert all(r.verified for r in receiver.requests)


def test_back_off_is_capped_at_an_hour_and_stops_after_24_hours(
    org, endpoint, receiver: Receiver, django_capture_on_commit_callbacks
):
    receiver.default_status = 500
    clock = Clock()
    queued = Inline(run=False)
    event = publish(org, queued, django_capture_on_commit_callbacks)
    clock.now = event.created_at
    waits: list[float] = []
    outcome = ""
    while True:
        [(delivery_id, lease)] = queued.calls
        queued.calls.clear()
        outcome = delivery_attempt(delivery_id=delivery_id, lease=lease, now=clock)
        if outcome != "retry":
            break
        delivery = Delivery.objects.get()
        wait = (delivery.next_try_at - clock.now).total_seconds()
        waits.append(wait)
        clock.advance(wait)
        deliveries_sweep(now=clock.now, enqueue=queued)
    assert outcome == "gave-up"
    assert waits[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert max(waits) == 3600
    assert clock.now == event.created_at + dt.timedelta(hours=24)  # the last try
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED
    assert delivery.next_try_at is None
    assert "Gave up after 24 h" in delivery.last_error
    assert delivery.attempts == len(waits) + 1


def test_410_turns_the_endpoint_off_and_says_so(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    receiver.script = [410]
    publish(org, inline, django_capture_on_commit_callbacks)
    assert inline.outcomes == ["gone"]
    endpoint.refresh_from_db()
    assert not endpoint.active
    assert "410" in endpoint.disabled_reason
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED and delivery.last_status == 410
    # Nothing more is published to it.
    with django_capture_on_commit_callbacks(execute=True):
        again = event_publish(
            organization_id=org.pk, type="call.completed", data={}, enqueue=inline
        )
    assert again is None
    assert len(receiver.requests) == 1


def test_a_redirect_is_a_failure_and_is_not_followed(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    receiver.script = [302]
    publish(org, inline, django_capture_on_commit_callbacks)
    assert inline.outcomes == ["retry"]
    assert [r.path for r in receiver.requests] == ["/hook"]
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.PENDING
    assert delivery.last_status == 302
    assert "Redirect to /elsewhere not followed" in delivery.last_error


def test_no_answer_in_time_is_a_failure(
    org,
    endpoint,
    receiver: Receiver,
    inline,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    monkeypatch.setattr(sender, "TIMEOUT_S", 0.3)
    monkeypatch.setattr(sender, "_local", type(sender._local)())  # a new client
    receiver.delay_s = 1.0
    publish(org, inline, django_capture_on_commit_callbacks)
    assert inline.outcomes == ["retry"]
    delivery = Delivery.objects.get()
    assert delivery.last_status is None
    assert "No answer within" in delivery.last_error


def test_a_refused_connection_is_retried(
    org, endpoint, inline, django_capture_on_commit_callbacks
):
    endpoint.url = "http://127.0.0.1:9/hook"  # nothing listens
    endpoint.save()
    publish(org, inline, django_capture_on_commit_callbacks)
    assert inline.outcomes == ["retry"]
    assert "ConnectError" in Delivery.objects.get().last_error


def test_a_lease_sends_once(
    org, endpoint, receiver: Receiver, django_capture_on_commit_callbacks
):
    """Two messages for one delivery (a sweep after a slow queue): one POST."""
    queued = Inline(run=False)
    publish(org, queued, django_capture_on_commit_callbacks)
    [(delivery_id, lease)] = queued.calls
    # The lease ran out while the message waited: the sweep hands it on again.
    later = timezone.now() + services.enqueue_lease() + dt.timedelta(seconds=1)
    assert deliveries_sweep(now=later, enqueue=queued) == [delivery_id]
    _, new_lease = queued.calls[1]
    assert delivery_attempt(delivery_id=delivery_id, lease=lease) == "skipped"
    assert delivery_attempt(delivery_id=delivery_id, lease=new_lease) == "delivered"
    assert delivery_attempt(delivery_id=delivery_id, lease=new_lease) == "skipped"
    assert len(receiver.requests) == 1


def test_send_again_resends_with_the_same_id(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    publish(org, inline, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_send_again(delivery=delivery, enqueue=inline)
    assert inline.outcomes == ["delivered", "delivered"]
    first, second = receiver.requests
    assert first.event["id"] == second.event["id"]
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.state == Delivery.State.DELIVERED


def test_only_subscribed_active_endpoints_of_the_organisation_get_it(
    org, endpoint, receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    from notifications.models import WebhookEndpoint
    from tests.agents.factories import OrganizationFactory

    other = WebhookEndpoint.objects.create(
        organization=OrganizationFactory(),
        url=receiver.url,
        secret="x" * 20,
        events=["call.completed"],
    )
    WebhookEndpoint.objects.create(
        organization=org, url=receiver.url, secret="y" * 20, events=["job.created"]
    )
    WebhookEndpoint.objects.create(
        organization=org,
        url=receiver.url,
        secret="z" * 20,
        events=["call.completed"],
        active=False,
    )
    publish(org, inline, django_capture_on_commit_callbacks)
    assert list(Delivery.objects.values_list("endpoint_id", flat=True)) == [endpoint.pk]
    assert not other.deliveries.exists()


def test_a_retry_getting_through_brings_the_other_retries_forward(
    org, endpoint, receiver: Receiver, django_capture_on_commit_callbacks
):
    """The endpoint is back: its waiting retries go now, not after their back-off."""
    receiver.script = [500, 500, 500]
    clock = Clock()
    queued = Inline(run=False)
    for _ in range(3):
        publish(org, queued, django_capture_on_commit_callbacks)
    for delivery_id, lease in queued.calls:
        assert (
            delivery_attempt(delivery_id=delivery_id, lease=lease, now=clock) == "retry"
        )
    queued.calls.clear()
    first, *others = Delivery.objects.order_by("pk")
    # The first comes due a little earlier than the others (made to), and succeeds.
    Delivery.objects.filter(pk__in=[d.pk for d in others]).update(
        next_try_at=clock.now + dt.timedelta(seconds=600)
    )
    clock.advance(30)
    assert deliveries_sweep(now=clock.now, enqueue=queued) == [first.pk]
    [(delivery_id, lease)] = queued.calls
    assert (
        delivery_attempt(delivery_id=delivery_id, lease=lease, now=clock) == "delivered"
    )
    queued.calls.clear()
    assert sorted(deliveries_sweep(now=clock.now, enqueue=queued)) == [
        d.pk for d in others
    ]
