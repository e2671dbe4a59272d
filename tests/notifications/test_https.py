"""An https receiver reached through a name: the request goes to the checked address
while TLS still verifies the certificate for the name (SNI), so pinning the address
does not break https."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notifications import sender
from notifications.models import Delivery
from notifications.services import event_publish
from tests.notifications.conftest import SECRET
from tests.notifications.receiver import Receiver

pytestmark = pytest.mark.django_db

NAME = "hooks.test"


def self_signed(tmp: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp / "cert.pem", tmp / "key.pem", pem


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: Any) -> Iterator[Receiver]:
    cert, key, pem = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setattr(
        sender, "VERIFY", ssl.create_default_context(cadata=pem.decode())
    )
    monkeypatch.setattr(sender, "_local", type(sender._local)())  # a new client
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == NAME else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    receiver = Receiver(SECRET).start(tls=server_tls)
    yield receiver
    receiver.stop()


def test_https_through_a_name_verifies_the_certificate(
    org, endpoint, tls_receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    port = tls_receiver.url.split(":")[2].split("/")[0]
    endpoint.url = f"https://{NAME}:{port}/hook"
    endpoint.save()
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(
            organization_id=org.pk,
            type="job.created",
            data={"job_id": 1},
            enqueue=inline,
        )
    assert inline.outcomes == ["delivered"], Delivery.objects.get().last_error
    [got] = tls_receiver.requests
    assert got.verified and got.headers["Host"] == f"{NAME}:{port}"


def test_a_certificate_for_another_name_fails(
    org, endpoint, tls_receiver: Receiver, inline, django_capture_on_commit_callbacks
):
    port = tls_receiver.url.split(":")[2].split("/")[0]
    endpoint.url = f"https://127.0.0.1:{port}/hook"  # the certificate names hooks.test
    endpoint.save()
    with django_capture_on_commit_callbacks(execute=True):
        event_publish(
            organization_id=org.pk,
            type="job.created",
            data={"job_id": 1},
            enqueue=inline,
        )
    assert inline.outcomes == ["retry"]
    assert "ConnectError" in Delivery.objects.get().last_error
    assert tls_receiver.requests == []
