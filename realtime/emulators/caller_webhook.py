"""What Twilio does before the stream: the signed voice webhook and its TwiML.

Re-exported by ``realtime.emulators.caller``.
"""

from __future__ import annotations

import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from twilio.request_validator import RequestValidator

__all__ = [
    "StreamInstruction",
    "TwimlError",
    "new_sid",
    "parse_stream_twiml",
    "post_webhook",
    "sign_request",
    "voice_webhook_params",
]


def new_sid(prefix: str) -> str:
    """Return a Twilio-style SID: ``prefix`` and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def sign_request(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Return the ``X-Twilio-Signature`` of a request to ``url`` (PROTOCOL B4).

    For a WebSocket upgrade, pass the ``wss://`` URL and no parameters.
    """
    signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    return str(signature)


def voice_webhook_params(
    *,
    call_sid: str | None = None,
    account_sid: str | None = None,
    from_: str = "+819012345678",
    to: str = "+81312345678",
    call_status: str = "ringing",
) -> dict[str, str]:
    """Return the form fields Twilio posts to a voice URL for an inbound call."""
    return {
        "CallSid": call_sid or new_sid("CA"),
        "AccountSid": account_sid or new_sid("AC"),
        "From": from_,
        "To": to,
        "Caller": from_,
        "Called": to,
        "CallStatus": call_status,
        "ApiVersion": "2010-04-01",
        "Direction": "inbound",
        "FromCountry": "JP",
        "ToCountry": "JP",
    }


async def post_webhook(
    url: str,
    params: Mapping[str, str],
    auth_token: str,
    *,
    client: httpx.AsyncClient | None = None,
) -> httpx.Response:
    """POST form-encoded ``params`` to ``url`` with a valid Twilio signature."""
    headers = {
        "X-Twilio-Signature": sign_request(auth_token, url, params),
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    if client is not None:
        return await client.post(url, data=dict(params), headers=headers)
    async with httpx.AsyncClient() as own:
        return await own.post(url, data=dict(params), headers=headers)


class TwimlError(ValueError):
    """The TwiML has no usable ``<Connect><Stream>``."""


@dataclass(frozen=True, slots=True)
class StreamInstruction:
    """What ``<Response><Connect><Stream>`` tells Twilio to open."""

    url: str
    parameters: dict[str, str]
    """``<Parameter name value>`` pairs, which arrive in start.customParameters."""
    name: str | None = None
    track: str | None = None
    status_callback: str | None = None


def parse_stream_twiml(xml: str) -> StreamInstruction:
    """Read the ``<Connect><Stream>`` of a TwiML document.

    Raises TwimlError when it is missing, when the URL is not an absolute
    ws(s) URL (Twilio allows only wss; ws is for local tests), or when the URL
    has a query string (Twilio drops it; use ``<Parameter>``).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise TwimlError(f"not XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"root element is <{root.tag}>, not <Response>")
    stream = root.find("./Connect/Stream")
    if stream is None:
        raise TwimlError("no <Connect><Stream> in the TwiML")
    url = stream.get("url", "")
    parts = urlsplit(url)
    if parts.scheme not in ("wss", "ws") or not parts.netloc:
        raise TwimlError(f"<Stream url> must be an absolute wss URL, got {url!r}")
    if parts.query:
        raise TwimlError(f"<Stream url> has a query string, which Twilio drops: {url}")
    parameters: dict[str, str] = {}
    for parameter in stream.findall("Parameter"):
        name = parameter.get("name")
        if not name:
            raise TwimlError("<Parameter> without a name")
        parameters[name] = parameter.get("value", "")
    return StreamInstruction(
        url=url,
        parameters=parameters,
        name=stream.get("name"),
        track=stream.get("track"),
        status_callback=stream.get("statusCallback"),
    )
