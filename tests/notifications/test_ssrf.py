"""SSRF guard (F-77): private and loopback addresses are refused at save and at
send, after DNS resolution, unless ALLOW_PRIVATE_URLS is on."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from notifications.models import Delivery, WebhookEndpoint
from notifications.services import endpoint_save, event_publish
from notifications.urlsafety import UnsafeURL, resolve_target
from tests.notifications.conftest import SECRET
from tests.notifications.receiver import Receiver


def fake_dns(answers: dict[str, list[str]]) -> Any:
    def resolver(host: str, port: int, **_: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, port))
            for a in answers[host]
        ]

    return resolver


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_literals_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="private, loopback or reserved"):
        resolve_target(url, allow_private=False)


def test_a_name_is_judged_by_what_it_resolves_to() -> None:
    dns = fake_dns(
        {
            "hooks.example.com": ["93.184.216.34"],
            "sneaky.example.com": ["93.184.216.34", "10.0.0.7"],
        }
    )
    target = resolve_target(
        "https://hooks.example.com/x", allow_private=False, resolver=dns
    )
    assert target.addresses == ("93.184.216.34",) and target.port == 443
    with pytest.raises(UnsafeURL, match=r"resolves to 10\.0\.0\.7"):
        resolve_target(
            "https://sneaky.example.com/x", allow_private=False, resolver=dns
        )
    with pytest.raises(UnsafeURL, match="does not resolve"):
        resolve_target(
            "https://nowhere.example.com/", allow_private=False, resolver=dns
        )
    # Allowed when private URLs are.
    resolve_target("https://sneaky.example.com/x", allow_private=True, resolver=dns)


@pytest.mark.parametrize(
    "url", ["ftp://93.184.216.34/x", "file:///etc/passwd", "http:///nohost"]
)
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        resolve_target(url, allow_private=True)


@pytest.mark.django_db
def test_refused_at_save_naming_the_address(settings, org) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    endpoint = WebhookEndpoint(
        organization=org,
        url="http://127.0.0.1:8080/hook",
        secret=SECRET,
        events=["job.created"],
    )
    with pytest.raises(ValidationError) as refused:
        endpoint_save(endpoint=endpoint)
    assert "127.0.0.1" in str(refused.value.message_dict["url"])
    assert not WebhookEndpoint.objects.exists()
    settings.ALLOW_PRIVATE_URLS = True
    endpoint_save(endpoint=endpoint)
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db
def test_refused_at_send_after_resolution(
    settings,
    org,
    endpoint,
    receiver: Receiver,
    inline,
    django_capture_on_commit_callbacks,
) -> None:
    """Saved while allowed (or the name moved to a private address since): no POST."""
    settings.ALLOW_PRIVATE_URLS = False
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(
            organization_id=org.pk,
            type="job.created",
            data={"job_id": 1},
            enqueue=inline,
        )
    assert inline.outcomes == ["refused"]
    assert receiver.requests == []
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED
    assert "127.0.0.1" in delivery.last_error and delivery.next_try_at is None


@pytest.mark.django_db
def test_the_request_goes_to_the_checked_address(
    monkeypatch,
    org,
    endpoint,
    receiver: Receiver,
    inline,
    django_capture_on_commit_callbacks,
) -> None:
    """The name is resolved once; the POST goes to that address with the Host kept."""
    port = receiver.url.split(":")[2].split("/")[0]
    endpoint.url = f"http://hooks.test:{port}/hook"
    endpoint.save()
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        if host == "hooks.test":
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(
            organization_id=org.pk, type="job.created", data={}, enqueue=inline
        )
    assert inline.outcomes == ["delivered"]
    assert lookups.count("hooks.test") == 1
    assert receiver.requests[0].headers["Host"] == f"hooks.test:{port}"
