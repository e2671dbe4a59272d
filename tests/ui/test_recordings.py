"""Recordings play in the call page (F-38) through `/calls/<id>/recordings/<rec>/audio`.

A stored file streams from storage (byte ranges for seeking); a Twilio recording is
fetched with the account's Basic auth as `<RecordingUrl>.mp3`. The Twilio emulator
has no recordings media endpoint, so Twilio is played here by a small local HTTP
server (a real transport: credentials, Range, errors, timeouts) or a replaced fetch.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import time
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile

from calls import twilio_client, views
from calls.models import Recording
from calls.status import CallStatus
from calls.twilio_client import (
    TwilioError,
    recording_media_url,
    twilio_recording_fetch,
)
from calls.views import RangeNotSatisfiable, byte_range
from tests.agents.factories import OperatorFactory, OrganizationFactory
from tests.calls.factories import CallSessionFactory

SID = "AC" + "1" * 32
TOKEN = "secret-token"
MP3 = b"ID3" + bytes(range(256)) * 40  # 10 243 bytes, enough for ranges


def make_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A short mono 16-bit WAV with a 440 Hz-ish square wave."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        period = rate // 440
        frames = bytearray()
        for i in range(int(seconds * rate)):
            sample = 6000 if (i % period) < period // 2 else -6000
            frames += sample.to_bytes(2, "little", signed=True)
        wav.writeframes(bytes(frames))
    return out.getvalue()


# --- Pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,expected",
    [
        ("", None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=50-10", None),  # unreadable: the whole file
        ("bytes=0-1,5-9", None),  # several ranges: the whole file
        ("items=0-9", None),
    ],
)
def test_byte_range(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0", "bytes=5000-6000"])
def test_byte_range_past_the_end(header):
    with pytest.raises(RangeNotSatisfiable):
        byte_range(header, 1000)


def test_recording_media_url_asks_for_mp3():
    base = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/RE1"
    assert recording_media_url(base) == base + ".mp3"
    assert recording_media_url(base + ".wav") == base + ".wav"


def test_credentials_go_only_to_twilio(settings):
    """A recording URL on another host is refused before any request is made."""
    settings.TWILIO_API_BASE_URL = "https://api.twilio.com"

    class NoNetwork(requests.Session):
        def get(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("no request may be made")

    with pytest.raises(TwilioError, match="credentials"):
        twilio_recording_fetch("https://evil.example/rec", session=NoNetwork())
    with pytest.raises(TwilioError, match="credentials"):
        twilio_recording_fetch("http://api.twilio.com/rec", session=NoNetwork())


# --- A local Twilio for recordings ----------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Joins its handlers on close, and a client that gave up (the time-out test)
    is not an error: otherwise the late handler's broken pipe printed a stray
    traceback after pytest's summary."""

    daemon_threads = False  # server_close() waits for them

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeTwilioMedia:
    """Serves `/…/Recordings/<sid>.mp3` with Basic auth and byte ranges, as Twilio does."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.delay_s = 0.0
        media = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                media.requests.append({"path": self.path, **dict(self.headers)})
                time.sleep(media.delay_s)
                expected = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self.send_response(401)
                    self.end_headers()
                    return
                if not self.path.endswith("/Recordings/RE1.mp3"):
                    self.send_response(404)
                    self.end_headers()
                    return
                body = MP3
                span = byte_range(self.headers.get("Range", ""), len(MP3))
                self.send_response(206 if span else 200)
                if span:
                    body = MP3[span[0] : span[1] + 1]
                    self.send_header(
                        "Content-Range", f"bytes {span[0]}-{span[1]}/{len(MP3)}"
                    )
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def recording_url(self, sid: str = "RE1") -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{SID}/Recordings/{sid}"


@pytest.fixture
def twilio_media(settings) -> Iterator[FakeTwilioMedia]:
    media = FakeTwilioMedia()
    media.thread.start()
    settings.TWILIO_API_BASE_URL = media.base_url
    settings.TWILIO_ACCOUNT_SID = SID
    settings.TWILIO_AUTH_TOKEN = TOKEN
    try:
        yield media
    finally:
        media.server.shutdown()
        media.server.server_close()


def test_fetch_sends_basic_auth_and_asks_for_mp3(twilio_media):
    media = twilio_recording_fetch(twilio_media.recording_url())
    assert media.status == 200
    assert media.headers["Content-Type"] == "audio/mpeg"
    assert media.headers["Content-Length"] == str(len(MP3))
    assert b"".join(media.chunks()) == MP3
    (sent,) = twilio_media.requests
    assert sent["path"].endswith("/Recordings/RE1.mp3")


def test_fetch_passes_a_byte_range_on(twilio_media):
    media = twilio_recording_fetch(
        twilio_media.recording_url(), byte_range="bytes=10-19"
    )
    assert media.status == 206
    assert media.headers["Content-Range"] == f"bytes 10-19/{len(MP3)}"
    assert b"".join(media.chunks()) == MP3[10:20]


def test_fetch_failures_are_twilio_errors(twilio_media, settings, monkeypatch):
    with pytest.raises(TwilioError, match="HTTP 404"):
        twilio_recording_fetch(twilio_media.recording_url("RE404"))
    settings.TWILIO_AUTH_TOKEN = "wrong"
    with pytest.raises(TwilioError, match="HTTP 401") as refused:
        twilio_recording_fetch(twilio_media.recording_url())
    assert refused.value.http_status == 502
    settings.TWILIO_AUTH_TOKEN = TOKEN
    monkeypatch.setattr(twilio_client, "RECORDING_TIMEOUT_S", (1.0, 0.2))
    twilio_media.delay_s = 1.0
    with pytest.raises(TwilioError, match="could not be reached"):
        twilio_recording_fetch(twilio_media.recording_url())


def test_fetch_unreachable_twilio(settings):
    from tests.ui.browser import free_port

    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TwilioError, match="could not be reached"):
        twilio_recording_fetch(f"{settings.TWILIO_API_BASE_URL}/Recordings/RE1")


# --- The view ------------------------------------------------------------------------

async_db = pytest.mark.django_db(transaction=True)


@sync_to_async
def _world(**recording: Any) -> tuple[Any, Any, Any, Recording]:
    org = OrganizationFactory()
    operator = OperatorFactory(organization=org)
    stranger = OperatorFactory(organization=OrganizationFactory())
    call = CallSessionFactory(organization=org, status=CallStatus.COMPLETED)
    rec = Recording.objects.create(
        call=call, source=Recording.Source.CONFERENCE, **recording
    )
    return operator, stranger, call, rec


def _audio_url(call: Any, rec: Recording) -> str:
    return f"/calls/{call.pk}/recordings/{rec.pk}/audio"


async def _body(response: Any) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@async_db
async def test_audio_needs_login_and_the_callers_organisation(async_client):
    operator, stranger, call, rec = await _world(url="https://api.twilio.com/x")
    url = _audio_url(call, rec)
    response = await async_client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    await async_client.aforce_login(stranger)
    assert (await async_client.get(url)).status_code == 404
    await async_client.aforce_login(operator)
    # A recording of another call of the organisation, under this call's address,
    # is not found either.
    other_rec = await sync_to_async(
        lambda: Recording.objects.create(
            call=CallSessionFactory(organization=call.organization),
            source=Recording.Source.TWILIO_CALL,
            url="https://api.twilio.com/y",
        )
    )()
    assert (
        await async_client.get(f"/calls/{call.pk}/recordings/{other_rec.pk}/audio")
    ).status_code == 404
    assert (await async_client.post(url)).status_code == 405


@async_db
async def test_file_recording_streams_with_ranges(async_client, media_root):
    wav = make_wav()
    operator, _, call, rec = await _world()
    await sync_to_async(rec.file.save)("call.wav", ContentFile(wav))
    await async_client.aforce_login(operator)

    response = await async_client.get(_audio_url(call, rec))
    assert response.status_code == 200
    assert response["Content-Type"] in ("audio/x-wav", "audio/wav")
    assert response["Content-Length"] == str(len(wav))
    assert response["Accept-Ranges"] == "bytes"
    assert response["Cache-Control"] == "private, max-age=300"
    assert f"call-{call.pk}-recording-{rec.pk}.wav" in response["Content-Disposition"]
    assert await _body(response) == wav

    part = await async_client.get(
        _audio_url(call, rec), headers={"Range": "bytes=44-143"}
    )
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 44-143/{len(wav)}"
    assert await _body(part) == wav[44:144]

    past = await async_client.get(
        _audio_url(call, rec), headers={"Range": f"bytes={len(wav)}-"}
    )
    assert past.status_code == 416
    assert past["Content-Range"] == f"bytes */{len(wav)}"


@async_db
async def test_missing_file_is_a_404_page(async_client, media_root):
    operator, _, call, rec = await _world(file="recordings/gone.wav")
    await async_client.aforce_login(operator)
    response = await async_client.get(_audio_url(call, rec))
    assert response.status_code == 404
    assert "録音ファイルが見つかりません。" in response.content.decode()


@async_db
async def test_twilio_recording_is_fetched_with_the_accounts_credentials(
    async_client, twilio_media
):
    operator, _, call, rec = await _world(url=twilio_media.recording_url())
    await async_client.aforce_login(operator)
    response = await async_client.get(_audio_url(call, rec))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert f"call-{call.pk}-recording-{rec.pk}.mp3" in response["Content-Disposition"]
    assert await _body(response) == MP3
    part = await async_client.get(_audio_url(call, rec), headers={"Range": "bytes=0-2"})
    assert part.status_code == 206
    assert await _body(part) == b"ID3"
    assert part["Content-Range"] == f"bytes 0-2/{len(MP3)}"


@async_db
async def test_twilio_failure_is_a_clear_502_page(async_client, twilio_media):
    operator, _, call, rec = await _world(url=twilio_media.recording_url("RE404"))
    await async_client.aforce_login(operator)
    response = await async_client.get(_audio_url(call, rec))
    assert response.status_code == 502
    html = response.content.decode()
    assert "録音を再生できません" in html
    assert "HTTP 404" in html
    assert f'href="/calls/{call.pk}/"' in html


@async_db
async def test_twilio_fetch_can_be_replaced(async_client, monkeypatch):
    """The view streams whatever the fetch returns, and closes it afterwards."""
    closed: list[bool] = []

    class Media:
        status = 200
        headers = {"Content-Type": "audio/mpeg", "Content-Length": "6"}

        def chunks(self) -> Iterator[bytes]:
            yield b"abc"
            yield b"def"

        def close(self) -> None:
            closed.append(True)

    calls: list[tuple[str, str]] = []

    def fake_fetch(url: str, *, byte_range: str = "") -> Media:
        calls.append((url, byte_range))
        return Media()

    monkeypatch.setattr(views, "twilio_recording_fetch", fake_fetch)
    operator, _, call, rec = await _world(url="https://api.twilio.com/2010/RE9")
    await async_client.aforce_login(operator)
    response = await async_client.get(
        _audio_url(call, rec), headers={"Range": "bytes=0-"}
    )
    assert await _body(response) == b"abcdef"
    assert calls == [("https://api.twilio.com/2010/RE9", "bytes=0-")]
    assert closed == [True]


def test_detail_page_plays_through_the_view(logged_in, ended_call):
    done = Recording.objects.create(
        call=ended_call,
        source=Recording.Source.CONFERENCE,
        url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE2",
    )
    recording = Recording.objects.create(
        call=ended_call,
        source=Recording.Source.CONFERENCE,
        url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE3",
        status=Recording.Status.IN_PROGRESS,
        recording_sid="RE3",
    )
    html = logged_in.get(f"/calls/{ended_call.pk}/").content.decode()
    assert f'src="/calls/{ended_call.pk}/recordings/{done.pk}/audio"' in html
    assert f"/recordings/{recording.pk}/audio" not in html  # not ready yet
    assert "録音中です。" in html
    assert "api.twilio.com" not in html  # no credential-needing URL on the page
