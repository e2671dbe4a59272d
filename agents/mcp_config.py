"""Validation of an agent profile's MCP servers (F-78): the shape the API and page share.

An entry is `{"name", "url", "headers", "allowed_tools", "timeout_s"}`: a unique name,
a public http(s) URL of a streamable-HTTP MCP endpoint (SSRF guard unless
ALLOW_PRIVATE_URLS), headers sent with every request (secrets: write-only, masked
on pages), the tools allowed (empty: all) and a time-out per tool call.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

from agents.http_tools_config import NAME_RE as TOOL_NAME_RE
from agents.http_tools_config import entry_error, timeout_check, url_check

FIELDS = ("name", "url", "headers", "allowed_tools", "timeout_s")
MAX_SERVERS = 10
MAX_HEADERS = 20
MAX_ALLOWED = 100
TIMEOUT_MAX_S = 60.0
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# RFC 9110 token characters for a header name; values: no control characters.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


def mcp_servers_clean(value: Any) -> list[dict[str, Any]]:
    """The validated MCP servers of a profile, or ValidationError naming entry and field."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValidationError("MCP servers must be a JSON list of objects.")
    if len(value) > MAX_SERVERS:
        raise ValidationError(f"At most {MAX_SERVERS} MCP servers.")
    seen: set[str] = set()
    cleaned: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise entry_error(index, "", "entry", "must be a JSON object.")
        name = entry.get("name")
        shown = name if isinstance(name, str) else ""

        def fail(
            message: str, field: str = "", _i: int = index, _n: str = shown
        ) -> Any:
            return entry_error(_i, _n, field, message)

        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise fail(f"unknown key(s) {', '.join(unknown)}.", "entry")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise fail("letters, digits, _ and - only, 1 to 40 characters.", "name")
        if name in seen:
            raise fail("another MCP server has this name.", "name")
        seen.add(name)
        url = url_check(entry.get("url"), fail=lambda m, _f=fail: _f(m, "url"))
        headers = entry.get("headers") or {}
        if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
            raise fail(
                f"an object of at most {MAX_HEADERS} header names and values.",
                "headers",
            )
        for key, item in headers.items():
            if not HEADER_NAME_RE.match(key):
                raise fail(f"{key!r} is not a valid header name.", "headers")
            if not isinstance(item, str) or len(item) > 4000 or not item.isprintable():
                raise fail(
                    f"the value of {key} must be printable text (at most 4000).",
                    "headers",
                )
        allowed = entry.get("allowed_tools") or []
        if (
            not isinstance(allowed, list)
            or len(allowed) > MAX_ALLOWED
            or not all(isinstance(t, str) and TOOL_NAME_RE.match(t) for t in allowed)
        ):
            raise fail(
                f"a list of at most {MAX_ALLOWED} tool names (empty: all tools).",
                "allowed_tools",
            )
        timeout_s = timeout_check(
            entry.get("timeout_s"),
            fail=lambda m, _f=fail: _f(m, "timeout_s"),
            maximum=TIMEOUT_MAX_S,
        )
        cleaned.append(
            {
                "name": name,
                "url": url,
                "headers": dict(headers),
                "allowed_tools": list(dict.fromkeys(allowed)),
                "timeout_s": timeout_s,
            }
        )
    return cleaned
