"""An agent profile's MCP servers (issue 18): the shape, checked and normalised.

Each entry is `{"name", "url", "headers", "allowed_tools", "timeout_s", "transport"}`
— the API's shape, stored as is in `AgentProfile.mcp_servers`. `transport` is
"streamable-http" (the current MCP transport, the default; an entry saved before
the field existed means it) or "sse" (the older HTTP+SSE transport). `headers` may carry secrets (an
`Authorization` token): they are sent to the server only, never logged nor put in
events; the API and the pages mask them (the serializer's job).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from notifications.urlsafety import UnsafeURL, resolve_target, url_parts

MAX_SERVERS = 10
MAX_HEADERS = 20
MAX_ALLOWED_TOOLS = 100
DEFAULT_TIMEOUT_S = 10.0
MIN_TIMEOUT_S = 0.5
MAX_TIMEOUT_S = 60.0
FIELDS = ("name", "url", "headers", "allowed_tools", "timeout_s", "transport")
STREAMABLE_HTTP = "streamable-http"
SSE = "sse"
TRANSPORTS = (STREAMABLE_HTTP, SSE)

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# An HTTP header name (RFC 9110 token).
HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# What the Realtime API takes as a function name.
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Headers the client sets itself: a server entry may not override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "connection",
        "transfer-encoding",
    }
)


def _error(index: int, name: str, field: str, message: str) -> ValidationError:
    label = f"MCP server {index + 1}" + (f" ({name})" if name else "")
    return ValidationError(f"{label}: {field}: {message}")


def demo_mcp_urls() -> frozenset[str]:
    """The demo MCP server's URL in demo mode (a loopback URL the guard lets by)."""
    return frozenset({settings.DEMO_MCP_URL}) if settings.DEMO_MODE else frozenset()


def mcp_url_check(url: str, *, allow_private: bool | None = None) -> None:
    """Raise UnsafeURL if `url` may not be an MCP server's (SSRF, F-77's guard).

    With private URLs allowed any http(s) URL will do and nothing is resolved; so
    too for the demo's own MCP server in demo mode.
    """
    allow = settings.ALLOW_PRIVATE_URLS if allow_private is None else allow_private
    if allow or url in demo_mcp_urls():
        url_parts(url)
    else:
        resolve_target(url, allow_private=False)


def mcp_servers_clean(value: Any) -> list[dict[str, Any]]:
    """The MCP server entries of `value`, normalised; ValidationError naming the
    entry and field of the first fault."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValidationError("MCP servers must be a list of objects.")
    if len(value) > MAX_SERVERS:
        raise ValidationError(f"At most {MAX_SERVERS} MCP servers per agent.")
    cleaned: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise _error(index, "", "entry", "must be an object.")
        raw_name = entry.get("name")
        name = raw_name.strip() if isinstance(raw_name, str) else ""
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise _error(index, name, ", ".join(unknown), "unknown field.")
        if not NAME_RE.match(name):
            raise _error(
                index,
                name,
                "name",
                "1–40 letters, digits, '_' or '-' are required.",
            )
        if name in seen:
            raise _error(index, name, "name", "another MCP server has this name.")
        seen.add(name)
        cleaned.append(
            {
                "name": name,
                "url": _url(index, name, entry.get("url")),
                "headers": _headers(index, name, entry.get("headers")),
                "allowed_tools": _allowed(index, name, entry.get("allowed_tools")),
                "timeout_s": _timeout(index, name, entry.get("timeout_s")),
                "transport": _transport(index, name, entry.get("transport")),
            }
        )
    return cleaned


def _url(index: int, name: str, url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise _error(index, name, "url", "a URL is required.")
    url = url.strip()
    if len(url) > 2000:
        raise _error(index, name, "url", "at most 2000 characters.")
    try:
        mcp_url_check(url)
    except UnsafeURL as exc:
        raise _error(index, name, "url", str(exc)) from exc
    return url


def _headers(index: int, name: str, headers: Any) -> dict[str, str]:
    if headers in (None, ""):
        return {}
    if not isinstance(headers, dict):
        raise _error(index, name, "headers", "must be an object of name → value.")
    if len(headers) > MAX_HEADERS:
        raise _error(index, name, "headers", f"at most {MAX_HEADERS} headers.")
    out: dict[str, str] = {}
    for key, val in headers.items():
        if not isinstance(key, str) or not HEADER_RE.match(key):
            raise _error(index, name, "headers", f"{key!r} is not a header name.")
        if key.lower() in RESERVED_HEADERS:
            raise _error(index, name, "headers", f"{key} is set by the client.")
        if not isinstance(val, str) or len(val) > 4000:
            raise _error(
                index, name, "headers", f"{key}: the value must be text (≤ 4000)."
            )
        if any(c in val for c in "\r\n\0"):
            raise _error(index, name, "headers", f"{key}: line breaks not allowed.")
        out[key] = val
    return out


def _allowed(index: int, name: str, allowed: Any) -> list[str]:
    if allowed in (None, ""):
        return []
    if not isinstance(allowed, list) or not all(isinstance(t, str) for t in allowed):
        raise _error(index, name, "allowed_tools", "must be a list of tool names.")
    if len(allowed) > MAX_ALLOWED_TOOLS:
        raise _error(
            index, name, "allowed_tools", f"at most {MAX_ALLOWED_TOOLS} names."
        )
    out: list[str] = []
    for tool in allowed:
        tool = tool.strip()
        if not TOOL_NAME_RE.match(tool):
            raise _error(index, name, "allowed_tools", f"{tool!r} is not a tool name.")
        if tool not in out:
            out.append(tool)
    return out


def _timeout(index: int, name: str, timeout: Any) -> float:
    if timeout in (None, ""):
        return DEFAULT_TIMEOUT_S
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise _error(index, name, "timeout_s", "must be a number of seconds.")
    if not MIN_TIMEOUT_S <= float(timeout) <= MAX_TIMEOUT_S:
        raise _error(
            index,
            name,
            "timeout_s",
            f"must be from {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} seconds.",
        )
    return float(timeout)


def _transport(index: int, name: str, transport: Any) -> str:
    if transport in (None, ""):
        return STREAMABLE_HTTP
    if transport not in TRANSPORTS:
        raise _error(
            index, name, "transport", f"must be one of {', '.join(TRANSPORTS)}."
        )
    return str(transport)
