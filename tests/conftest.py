"""Shared fixtures. Network beyond loopback fails the tests (STYLE: outgoing network fails)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from typing import Any

import pytest

# The greeting cache (F-73) is off unless a test turns it on (`greeting_cache`
# fixtures): a greeting cached by one test must not change what another sees. Server
# processes that tests start inherit this.
os.environ["GREETING_CACHE_SIZE"] = "0"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        raise OSError(
            f"tests may not reach the network: connect to {address!r} refused"
        )
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        raise OSError(
            f"tests may not reach the network: connect to {address!r} refused"
        )
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> Any:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _sse_streams_not_ended() -> None:
    """sse-starlette (under the MCP SDK's servers) replaces uvicorn's
    `Server.handle_exit` on import with one that also sets `AppStatus.should_exit`,
    process-wide and never reset: it ends every SSE response at once. A test that
    calls a server's handle_exit (test_draining's second signal) would leave it set,
    and the SDK's SSE server of a later test would close its stream before sending
    the `endpoint` event. Each test starts with it clear."""
    sse = sys.modules.get("sse_starlette.sse")
    if sse is not None:
        sse.AppStatus.should_exit = False


@pytest.fixture(autouse=True)
def _greeting_cache_off() -> Any:
    """In-process services too: Django read its settings before this file ran."""
    from django.conf import settings

    saved = settings.GREETING_CACHE_SIZE
    settings.GREETING_CACHE_SIZE = 0
    yield
    settings.GREETING_CACHE_SIZE = saved


@pytest.fixture(autouse=True)
def summary_tasks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record after-call task messages (F-76) instead of sending them to a broker.

    Every ended call enqueues one on commit; tests that want the step run call
    `calls.summary.tasks.summarize_call` themselves or start a real worker.
    """
    sent: list[dict[str, Any]] = []

    def record(*, call_id: int, announce: bool = True) -> None:
        sent.append({"call_id": call_id, "announce": announce})

    monkeypatch.setattr("calls.summary.dispatch.summary_enqueue", record)
    return sent


@pytest.fixture(autouse=True)
def _fresh_redis_channel_layer() -> Any:
    """Each test gets its own Redis channel layer (the PostgreSQL + Redis suite).

    channels_redis keeps an asyncio lock per channel prefix in the layer instance,
    bound to the first loop that takes it; each test runs on a loop of its own, and
    a lock a finished test left taken fails the next test's receive ("bound to a
    different event loop"). Layers are looked up per use (get_channel_layer()), so
    dropping the instance is enough.
    """
    yield
    from channels.layers import channel_layers

    for alias, layer in list(channel_layers.backends.items()):
        if type(layer).__module__.startswith("channels_redis"):
            del channel_layers.backends[alias]
