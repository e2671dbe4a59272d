"""An httpx2 transport pinned to the address the SSRF guard checked (issue 18).

The MCP SDK's client builds its requests from the server's URL, so the name would be
resolved again at connect time: a second DNS answer could then slip a private address
in after the check (DNS rebinding). `PinnedTransport` sends every request for the
checked host to the checked address instead, keeping the Host header and the TLS
name (SNI and certificate check) as the name, like the webhooks (notifications/sender.py).
A request for any other origin is refused, never resolved.
"""

from __future__ import annotations

import httpx2

from notifications.urlsafety import Target

MAX_PINNED_URLS = 16


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Send requests for `target`'s origin to `target.addresses[0]` through `inner`."""

    def __init__(self, target: Target, inner: httpx2.AsyncBaseTransport) -> None:
        self.target = target
        self.inner = inner
        # A session posts to one URL: its pinned twin is built once (a URL costs
        # ~10 µs to rebuild, per tool call otherwise).
        self._pinned_urls: dict[str, httpx2.URL] = {}

    def _pinned(self, request: httpx2.Request) -> httpx2.URL:
        url = request.url
        key = str(url)
        pinned = self._pinned_urls.get(key)
        if pinned is not None:
            return pinned
        origin = (url.scheme, url.host, url.port or _default_port(url.scheme))
        if origin != (self.target.scheme, self.target.host, self.target.port):
            raise httpx2.ConnectError(
                f"{url.host} is not the checked host {self.target.host}",
                request=request,
            )
        pinned = url.copy_with(host=self.target.addresses[0])
        if len(self._pinned_urls) < MAX_PINNED_URLS:
            self._pinned_urls[key] = pinned
        return pinned

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions["sni_hostname"] = self.target.host
        # A request of its own: the caller's keeps the name (redirect checks use it);
        # the Host header was set from the name when the request was built.
        pinned = httpx2.Request(
            request.method,
            self._pinned(request),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
