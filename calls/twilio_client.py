"""The one module that talks to Twilio's REST API (PROTOCOL B5).

Built on the `twilio` library and pointed at `TWILIO_API_BASE_URL`, so tests, the demo
and benchmarks swap in the emulator by changing a URL, never the code path. Every
failure (an error reply, a refused connection, a timeout) becomes `TwilioError`, an
`ApplicationError` the API renders as 502 `upstream_error`.

Outbound calls go through `dial_outbound(call)`, the default `settings.TWILIO_DIALER`;
campaign calls through `campaign_dial(call)` and, to find a call whose create may have
happened, `twilio_calls_list(to=…)`; the handoff service uses `twilio_call_create` and
`twilio_call_update` directly, the supervisor's phone listen
`twilio_participant_create`; the call pages play recordings through
`twilio_recording_fetch`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from callcenter.errors import ApplicationError, ErrorCode

if TYPE_CHECKING:
    from calls.models import CallSession

log = logging.getLogger(__name__)

# Twilio's status callback events for a call we place (F-12).
CALL_STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# Recording media: (connect, read) timeouts in seconds, and the chunk streamed on.
RECORDING_TIMEOUT_S = (5.0, 20.0)
RECORDING_CHUNK_BYTES = 64 * 1024


class TwilioError(ApplicationError):
    """Twilio refused a request or could not be reached."""

    code = ErrorCode.UPSTREAM
    http_status = 502


def twilio_rest_client(*, timeout: float | None = None) -> Client:
    """Return a REST client with our credentials, aimed at `TWILIO_API_BASE_URL`.

    `timeout` (seconds) bounds each request; None is the library's default.
    """
    http_client = TwilioHttpClient(timeout=timeout) if timeout is not None else None
    client = Client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        http_client=http_client,
    )
    client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def _upstream_error(action: str, exc: Exception) -> TwilioError:
    if isinstance(exc, TwilioRestException):
        details: dict[str, Any] = {"status": exc.status, "twilio_code": exc.code}
        message = f"Twilio refused to {action}: {exc.msg or exc.status}"
    else:
        details = {}
        message = f"Twilio could not be reached to {action}: {exc}"
    log.warning("%s", message)
    return TwilioError(message, details=details)


def twilio_error_retryable(exc: TwilioError) -> bool:
    """Is this failure worth another try: 429 (20429), a 5xx, or no reply at all?

    Every one of these may also mean the request did reach Twilio (a 5xx after the
    call was created, a reply lost on the way back): reconcile before trying again.
    """
    status = exc.details.get("status")
    return status is None or status == 429 or int(status) >= 500


def twilio_call_create(*, timeout: float | None = None, **params: Any) -> str:
    """Create a call (`calls.create`) and return its SID; raise TwilioError."""
    try:
        created = twilio_rest_client(timeout=timeout).calls.create(**params)
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("place the call", exc) from exc
    return str(created.sid)


def twilio_call_update(*, call_sid: str, **params: Any) -> None:
    """Update a live call (`calls(sid).update`: new TwiML, status); raise TwilioError."""
    try:
        twilio_rest_client().calls(call_sid).update(**params)
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("update the call", exc) from exc


def twilio_participant_create(
    *, conference: str, to: str, muted: bool, coach_call_sid: str | None = None
) -> str:
    """Dial `to` into the conference `conference` (its name or SID); return the leg's SID.

    For a supervisor listening from a phone (F-75): `muted`, or coaching the leg
    `coach_call_sid` (heard by that participant only). No beep, so the people in the
    room are not told; the supervisor leaving does not end the room.
    """
    params: dict[str, Any] = {
        "from_": settings.TWILIO_FROM_NUMBER,
        "to": to,
        "muted": muted,
        "beep": "false",
        "end_conference_on_exit": False,
    }
    if coach_call_sid:
        params.update(coaching=True, call_sid_to_coach=coach_call_sid)
    try:
        created = (
            twilio_rest_client().conferences(conference).participants.create(**params)
        )
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("add the participant", exc) from exc
    return str(created.call_sid)


def dial_outbound(call: CallSession) -> str:
    """Dial an outbound call's callee with answering-machine detection (F-11).

    Twilio fetches the answer TwiML from our outbound webhook and posts every status
    to the status webhook, both keyed by our call id. Returns the Twilio call SID.
    """
    base = settings.PUBLIC_BASE_URL
    return twilio_call_create(
        to=call.to_number,
        from_=call.from_number or settings.TWILIO_FROM_NUMBER,
        url=f"{base}/api/twilio/voice/outbound/{call.pk}",
        status_callback=f"{base}/api/twilio/status/{call.pk}",
        status_callback_event=CALL_STATUS_EVENTS,
        machine_detection="Enable",
    )


def campaign_dial(
    call: CallSession, *, machine_action: str = "hangup", timeout: float | None = None
) -> str:
    """Dial a campaign call (F-64) with asynchronous answering-machine detection.

    With `AsyncAmd` the answer webhook runs at once, so a person hears the AI
    without AMD's seconds of silence; the verdict comes later to
    `/api/twilio/amd/<call_id>`, which sends a machine the voicemail message or hangs
    up (`calls.telephony.call_amd_result`). Leaving a message waits for the beep
    (`DetectMessageEnd`); hanging up needs only the first verdict (`Enable`).
    """
    base = settings.PUBLIC_BASE_URL
    return twilio_call_create(
        timeout=timeout,
        to=call.to_number,
        from_=call.from_number or settings.TWILIO_FROM_NUMBER,
        url=f"{base}/api/twilio/voice/outbound/{call.pk}",
        status_callback=f"{base}/api/twilio/status/{call.pk}",
        status_callback_event=CALL_STATUS_EVENTS,
        machine_detection=(
            "DetectMessageEnd" if machine_action == "voicemail" else "Enable"
        ),
        async_amd="true",
        async_amd_status_callback=f"{base}/api/twilio/amd/{call.pk}",
    )


@dataclass(frozen=True, slots=True)
class ListedCall:
    """A call as Twilio's Calls list shows it (the fields reconciliation needs)."""

    sid: str
    to: str
    from_: str
    status: str
    date_created: datetime | None


def twilio_calls_list(
    *, to: str, from_: str = "", limit: int = 100, timeout: float | None = None
) -> list[ListedCall]:
    """Calls to `to` (and from `from_`), newest first; raise TwilioError.

    Filtered by `To`/`From` only: Twilio leaves `start_time` empty until a call is
    dialled, so a `StartTime` filter would hide a call still in Twilio's CPS queue,
    the very one a reconciliation must find. The caller filters by `date_created`.
    The resource carries neither our Url nor our StatusCallback, so a call cannot be
    matched by our call id; `To`, `From` and creation time are what there is.
    """
    filters: dict[str, Any] = {"to": to}
    if from_:
        filters["from_"] = from_
    try:
        listed = twilio_rest_client(timeout=timeout).calls.list(
            limit=limit, page_size=min(limit, 100), **filters
        )
    except (TwilioException, requests.RequestException, OSError) as exc:
        raise _upstream_error("list calls", exc) from exc
    calls = [
        ListedCall(
            sid=str(c.sid),
            to=str(c.to or ""),
            from_=str(c._from or ""),
            status=str(c.status or ""),
            date_created=c.date_created,
        )
        for c in listed
    ]
    # An emulator (or an older API) may ignore the filters: apply them here too.
    return [c for c in calls if c.to == to and (not from_ or c.from_ == from_)]


@dataclass(frozen=True, slots=True)
class RecordingMedia:
    """A recording's audio as Twilio serves it, open and not yet read.

    `status` is 200, or 206 for a byte range; `headers` are the ones worth passing on
    (Content-Type, Content-Length, Content-Range, Accept-Ranges). Read `chunks()`
    once, or `close()` it.
    """

    status: int
    headers: dict[str, str]
    response: requests.Response

    def chunks(self) -> Iterator[bytes]:
        """The audio in chunks; a failure mid-way ends it early (and is logged)."""
        try:
            yield from self.response.iter_content(RECORDING_CHUNK_BYTES)
        except (requests.RequestException, OSError) as exc:
            log.warning("Recording download cut short: %s", exc)
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()


_PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")


def recording_media_url(url: str) -> str:
    """Twilio's RecordingUrl has no extension; `.mp3` asks for the MP3 it serves."""
    path = urlsplit(url).path.lower()
    return url if path.endswith((".mp3", ".wav")) else f"{url}.mp3"


def _trusted_recording_host(url: str) -> bool:
    """Our credentials go only to Twilio (or the emulator we are pointed at)."""
    parts = urlsplit(url)
    configured = urlsplit(settings.TWILIO_API_BASE_URL)
    if (parts.scheme, parts.netloc) == (configured.scheme, configured.netloc):
        return True
    host = parts.hostname or ""
    return parts.scheme == "https" and (
        host == "twilio.com" or host.endswith(".twilio.com")
    )


def twilio_recording_fetch(
    url: str, *, byte_range: str = "", session: requests.Session | None = None
) -> RecordingMedia:
    """Open a Twilio recording's audio with the account's Basic auth; raise TwilioError.

    `url` is the RecordingUrl Twilio posted (`.mp3` is appended); `byte_range` is the
    browser's Range header, passed on so the player can seek. Redirects are followed
    (requests drops the credentials when the host changes).
    """
    media_url = recording_media_url(url)
    if not _trusted_recording_host(media_url):
        raise TwilioError(
            f"Refusing to send Twilio credentials to {urlsplit(media_url).netloc}: "
            "a recording URL must be Twilio's.",
            details={"url": media_url},
        )
    headers = {"Range": byte_range} if byte_range else {}
    http = session or requests.Session()
    try:
        response = http.get(
            media_url,
            auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN),
            headers=headers,
            timeout=RECORDING_TIMEOUT_S,
            stream=True,
        )
    except (requests.RequestException, OSError) as exc:
        raise _upstream_error("fetch the recording", exc) from exc
    if response.status_code not in (200, 206):
        response.close()
        message = f"Twilio refused to fetch the recording: HTTP {response.status_code}"
        log.warning("%s (%s)", message, media_url)
        raise TwilioError(message, details={"status": response.status_code})
    passed = {k: response.headers[k] for k in _PASSED_HEADERS if k in response.headers}
    passed.setdefault("Content-Type", "audio/mpeg")
    return RecordingMedia(
        status=response.status_code, headers=passed, response=response
    )
