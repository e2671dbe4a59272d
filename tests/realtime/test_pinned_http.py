"""MCP connections go to the address the SSRF guard checked (issue 18): the name is
resolved once per connect, and a second DNS answer cannot move the session."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import httpx2
import pytest

from notifications.urlsafety import Target
from realtime.emulators.demo_mcp import serve_mcp
from realtime.mcp_pool import McpPool, McpServer, McpUnavailable
from realtime.pinned_http import PinnedTransport
from tests.notifications.test_https import NAME, self_signed
from tests.realtime.mcp_servers import booking_server, entry

pytestmark = pytest.mark.timeout(30)

PUBLIC = "93.184.216.34"


class HostSpy:
    """ASGI middleware that keeps the Host header of every request, then passes
    the request on as addressed to the server's own address: the SDK server's own
    DNS-rebinding guard accepts no other Host (a virtual host's front would)."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def __call__(self, app: Any) -> Any:
        async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                self.hosts.append(headers[b"host"].decode())
                host, port = scope["server"]
                headers[b"host"] = f"{host}:{port}".encode()
                scope = {**scope, "headers": list(headers.items())}
            await app(scope, receive, send)

        return spy


def dns(
    monkeypatch: pytest.MonkeyPatch, answers: list[str], name: str = "booking.test"
) -> list[str]:
    """Resolve `name` to `answers` one lookup after the other (the last one from
    then on), other names as usual; returns the lookups made."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (name, name.encode()):  # anyio asks in bytes
            return real(host, port, *args, **kwargs)
        address = answers[min(len(lookups), len(answers) - 1)]
        lookups.append(address)
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return lookups


async def test_the_session_goes_to_the_checked_address_with_the_name_kept(
    monkeypatch,
):
    """Resolved once at connect; every request of the session (list, calls at
    once on several HTTP connections, the SDK's GET stream) reaches that address
    with the name as Host."""
    lookups = dns(monkeypatch, ["127.0.0.1", "192.0.2.1"])
    spy = HostSpy()
    pool = McpPool(allow_private=True)
    try:
        async with serve_mcp(booking_server(), wrap=spy) as url:
            port = url.split(":")[2].split("/")[0]
            server = McpServer.from_entry(
                entry(f"http://booking.test:{port}/mcp", timeout_s=3.0)
            )
            assert "lookup_booking" in {t.name for t in await pool.tools(server)}
            results = await asyncio.gather(
                *(
                    pool.call(server, "lookup_booking", {"booking_id": f"B-{i}"})
                    for i in range(5)
                )
            )
    finally:
        await pool.aclose()
    assert not any(result.is_error for result in results)
    assert lookups == ["127.0.0.1"]
    assert spy.hosts and set(spy.hosts) == {f"booking.test:{port}"}


async def test_a_name_rebound_to_a_private_address_after_the_check_is_not_reached(
    monkeypatch,
):
    """DNS rebinding: the check sees a public address, the next answer is loopback
    where a server listens. The session tries the checked address only (the tests'
    network guard refuses it), and the loopback server never hears from it."""
    lookups = dns(monkeypatch, [PUBLIC, "127.0.0.1"])
    tried: list[Any] = []
    guarded = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        tried.append(address[0])
        return guarded(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    spy = HostSpy()
    pool = McpPool(allow_private=False, retry_s=0.0, connect_timeout_s=3.0)
    try:
        async with serve_mcp(booking_server(), wrap=spy) as url:
            port = url.split(":")[2].split("/")[0]
            server = McpServer.from_entry(entry(f"http://booking.test:{port}/mcp"))
            with pytest.raises(McpUnavailable, match="connection refused"):
                await pool.tools(server)
    finally:
        await pool.aclose()
    assert lookups == [PUBLIC]
    assert PUBLIC in tried and "127.0.0.1" not in tried
    assert spy.hosts == []


async def test_https_keeps_the_name_for_tls_and_other_hosts_are_refused():
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    target = Target("https", "mcp.example.com", 443, ("2001:db8::5", PUBLIC))
    async with httpx2.AsyncClient(
        transport=PinnedTransport(target, httpx2.MockTransport(answer))
    ) as client:
        response = await client.post("https://mcp.example.com/mcp", json={})
        with pytest.raises(httpx2.ConnectError, match="not the checked host"):
            await client.get("https://elsewhere.example.com/mcp")
        with pytest.raises(httpx2.ConnectError, match="not the checked host"):
            await client.get("https://mcp.example.com:8443/mcp")
    assert response.request.url.host == "mcp.example.com"
    [pinned] = seen
    assert pinned.url.host == "2001:db8::5" and pinned.url.port is None
    assert pinned.headers["host"] == "mcp.example.com"
    assert pinned.extensions["sni_hostname"] == "mcp.example.com"


async def test_an_sse_server_is_listed_and_called_through_the_pinned_address(
    monkeypatch,
):
    """The older HTTP+SSE transport (`"transport": "sse"`), against the SDK's own
    SSE server: tools listed, a round trip, pinned like streamable HTTP."""
    lookups = dns(monkeypatch, ["127.0.0.1", "192.0.2.1"])
    spy = HostSpy()
    pool = McpPool(allow_private=True)
    try:
        async with serve_mcp(booking_server(), wrap=spy, sse=True) as url:
            port = url.split(":")[2].split("/")[0]
            server = McpServer.from_entry(
                entry(f"http://booking.test:{port}/sse", transport="sse")
            )
            listed = {t.name for t in await pool.tools(server)}
            result = await pool.call(server, "lookup_booking", {"booking_id": "B-7"})
    finally:
        await pool.aclose()
    assert "lookup_booking" in listed
    assert result.structured_content == {
        "booking_id": "B-7",
        "name": "山田 太郎",
        "people": 2,
    }
    assert lookups == ["127.0.0.1"]
    assert len(spy.hosts) >= 3 and set(spy.hosts) == {f"booking.test:{port}"}
    assert server.key != McpServer.from_entry(entry(server.url)).key


async def test_https_through_the_pinned_address_verifies_the_name(
    monkeypatch, tmp_path
):
    """TLS checks the certificate against the name (it has no IP in it): pinning
    the address keeps https working and verified."""
    cert, key, pem = self_signed(tmp_path)
    lookups = dns(monkeypatch, ["127.0.0.1", "192.0.2.1"], name=NAME)
    trusted = ssl.create_default_context(cadata=pem.decode())
    pool = McpPool(
        allow_private=True,
        transport=lambda: httpx2.AsyncHTTPTransport(verify=trusted, trust_env=False),
    )
    async with serve_mcp(
        booking_server(), wrap=HostSpy(), tls=(str(cert), str(key))
    ) as url:
        port = url.split(":")[2].split("/")[0]
        server = McpServer.from_entry(entry(f"https://{NAME}:{port}/mcp"))
        try:
            result = await pool.call(server, "lookup_booking", {"booking_id": "B-2"})
        finally:  # before the server stops: it waits for open TLS connections
            await pool.aclose()
    assert not result.is_error
    assert lookups == ["127.0.0.1"]
