"""Write-only secrets of tool configs (F-78): masked on reads, kept when sent back masked.

HTTP tools' `secret` and MCP servers' header values are never shown: pages and the
API show `MASK` instead. A write that sends `MASK` (or, for a tool's secret, leaves
it out) keeps the stored value of the entry with the same name, so reading a config
and writing it back changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

MASK = "********"


def http_tools_masked(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = copy.deepcopy(tools or [])
    for tool in shown:
        if isinstance(tool, dict) and tool.get("secret"):
            tool["secret"] = MASK
    return shown


def mcp_servers_masked(servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = copy.deepcopy(servers or [])
    for server in shown:
        if isinstance(server, dict) and isinstance(server.get("headers"), dict):
            server["headers"] = {k: MASK for k in server["headers"]}
    return shown


def _by_name(entries: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        return {}
    return {
        e["name"]: e
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    }


def _name(entry: dict[str, Any]) -> str:
    name = entry.get("name")
    return name if isinstance(name, str) else ""


def http_tools_unmasked(value: Any, stored: Any) -> Any:
    """`value` with masked or missing secrets taken from `stored` (same name)."""
    if not isinstance(value, list):
        return value
    old = _by_name(stored)
    result: list[Any] = []
    for entry in value:
        if isinstance(entry, dict) and entry.get("secret", MASK) == MASK:
            entry = dict(entry)
            previous = old.get(_name(entry))
            if previous is not None and previous.get("secret"):
                entry["secret"] = previous["secret"]
            else:
                entry.pop("secret", None)
        result.append(entry)
    return result


def mcp_servers_unmasked(value: Any, stored: Any) -> Any:
    """`value` with masked header values taken from `stored` (same server and header)."""
    if not isinstance(value, list):
        return value
    old = _by_name(stored)
    result: list[Any] = []
    for entry in value:
        if isinstance(entry, dict) and isinstance(entry.get("headers"), dict):
            entry = dict(entry)
            previous = old.get(_name(entry)) or {}
            before = previous.get("headers") or {}
            headers: dict[str, Any] = {}
            for key, item in entry["headers"].items():
                if item == MASK:
                    if key not in before:
                        # Nothing to keep: the validator names the header.
                        headers[key] = None
                        continue
                    item = before[key]
                headers[key] = item
            entry["headers"] = headers
        result.append(entry)
    return result
