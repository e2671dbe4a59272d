"""The settings page's "接続テスト" button (F-78): try each MCP server or HTTP tool.

MCP servers are asked for their tools through the per-process pool
(`realtime.mcp_pool.mcp_tools_list`); an HTTP tool gets one signed test POST
(`realtime.http_tools.http_tool_test`). Each entry's answer is put in words; the
entries are those typed on the page (masked secrets: the saved ones), validated as
a save would validate them, so a refused URL is said before anything is sent.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from agents.http_tools_config import http_tools_clean
from agents.mcp_config import mcp_servers_clean
from agents.models import TOOL_NAMES, AgentProfile
from agents.tool_masking import http_tools_unmasked, mcp_servers_unmasked
from realtime.http_tools import http_tool_test

log = logging.getLogger(__name__)

KINDS = ("mcp", "http")


def _mcp_pool() -> Any:
    """realtime.mcp_pool, imported when used (its SDK loads only for MCP tests)."""
    return importlib.import_module("realtime.mcp_pool")


async def _test_mcp(server: dict[str, Any]) -> dict[str, Any]:
    def failed(message: str) -> dict[str, Any]:
        return {"name": server["name"], "ok": False, "message": message, "tools": []}

    try:
        pool = _mcp_pool()
    except ImportError:
        return failed(_("この環境には MCP クライアントがありません。"))
    try:
        tools = await pool.mcp_tools_list(server)
    except pool.McpUnavailable as exc:
        return failed(_("失敗しました: %(detail)s") % {"detail": exc})
    except Exception as exc:  # an unexpected failure is still said in words
        log.exception("MCP test of %s failed", server["name"])
        return failed(
            _("失敗しました: %(detail)s") % {"detail": f"{type(exc).__name__}: {exc}"}
        )
    allowed = set(server.get("allowed_tools") or [])
    listed = [
        {"name": t["name"], "description": t.get("description", "")}
        for t in tools
        if not allowed or t["name"] in allowed
    ]
    message = _("接続できました。使えるツール: %(count)d 個") % {"count": len(listed)}
    missing = sorted(allowed - {t["name"] for t in tools})
    if missing:
        message += " " + _("(サーバーにないツール: %(names)s)") % {
            "names": ", ".join(missing)
        }
    return {"name": server["name"], "ok": True, "message": message, "tools": listed}


async def _test_http(tool: dict[str, Any]) -> dict[str, Any]:
    ok, detail = await http_tool_test(tool, allow_private=settings.ALLOW_PRIVATE_URLS)
    message = (
        _("接続できました: %(detail)s") if ok else _("失敗しました: %(detail)s")
    ) % {"detail": detail}
    return {
        "name": tool["name"],
        "ok": ok,
        "message": message,
        "tools": [{"name": tool["name"], "description": tool["description"]}]
        if ok
        else [],
    }


def tools_test(*, agent: AgentProfile, kind: str, text: str) -> dict[str, Any]:
    """Test every entry of the section's JSON `text`; `{"ok", "error"?, "results"}`."""
    if kind not in KINDS:
        return {"ok": False, "error": _("不明な種類です。"), "results": []}
    try:
        value = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        return {
            "ok": False,
            "error": _("JSON として読めません: %(error)s") % {"error": exc.msg},
            "results": [],
        }
    try:
        if kind == "mcp":
            entries = mcp_servers_clean(mcp_servers_unmasked(value, agent.mcp_servers))
        else:
            entries = http_tools_clean(
                http_tools_unmasked(value, agent.http_tools), builtin_names=TOOL_NAMES
            )
    except ValidationError as exc:
        return {"ok": False, "error": " ".join(exc.messages), "results": []}
    if not entries:
        return {"ok": False, "error": _("テストする項目がありません。"), "results": []}
    run = _test_mcp if kind == "mcp" else _test_http

    async def all_entries() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(run(e) for e in entries)))

    results = asyncio.run(all_entries())
    return {"ok": all(r["ok"] for r in results), "results": results}
