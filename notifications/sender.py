"""One webhook POST (F-77): resolve, refuse private addresses, pin the address, send.

The host is resolved once and every answer checked (`urlsafety`); the request then
goes to that address (Host header and TLS name kept), so a second DNS answer cannot
slip a private address in. No redirect is followed: a 3xx is a failed attempt. No
Django here: the caller passes the settings.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass

import httpx

from notifications.urlsafety import UnsafeURL, resolve_target

TIMEOUT_S = 10.0
EXCERPT_BYTES = 500

# TLS verification of the receivers (certifi's roots); tests trust their own CA here.
VERIFY: ssl.SSLContext | bool = True

_local = threading.local()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None  # the HTTP status, None when there was no answer
    excerpt: str = ""  # the start of the answer's body
    error: str = ""  # why there was no (usable) answer
    refused: bool = False  # the URL is not allowed (SSRF guard): no retry helps

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _client() -> httpx.Client:
    """One client (connection pool) per thread of a worker process."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = httpx.Client(
            timeout=httpx.Timeout(TIMEOUT_S),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the address is pinned
            verify=VERIFY,
        )
        _local.client = client
    return client


def post(
    *, url: str, body: bytes, headers: dict[str, str], allow_private: bool
) -> Outcome:
    """POST `body` to `url` and say what came back."""
    try:
        target = resolve_target(url, allow_private=allow_private)
    except UnsafeURL as exc:
        return Outcome(None, error=str(exc), refused=True)
    original = httpx.URL(url)
    pinned = original.copy_with(host=target.addresses[0])
    headers = {**headers, "Host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with _client().stream(
            "POST", pinned, content=body, headers=headers, extensions=extensions
        ) as response:
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
            text = excerpt[:EXCERPT_BYTES].decode("utf-8", errors="replace")
            error = ""
            if response.is_redirect:
                where = response.headers.get("location", "")
                error = f"Redirect to {where[:200]} not followed."
            return Outcome(response.status_code, excerpt=text, error=error)
    except httpx.TimeoutException:
        return Outcome(None, error=f"No answer within {TIMEOUT_S:.0f} s.")
    except httpx.HTTPError as exc:
        return Outcome(None, error=f"{type(exc).__name__}: {exc}"[:300])
