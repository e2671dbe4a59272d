"""The agent resource's mcp_servers and http_tools (F-78): validation, write-only secrets."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import AgentProfile, Organization
from agents.tool_masking import MASK

SECRET = "tool-secret-0123456789"
AGENT = {
    "name": "受付",
    "instructions_template": "{{company_name}}の受付です。",
    "greeting_template": "お電話ありがとうございます。",
}
TOOL = {
    "name": "lookup_order",
    "description": "注文を番号で調べる",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    "url": "https://tools.example.com/lookup",
    "secret": SECRET,
    "timeout_s": 5,
}
SERVER = {
    "name": "booking",
    "url": "https://mcp.example.com/mcp",
    "headers": {"Authorization": "Bearer abc"},
    "allowed_tools": [],
    "timeout_s": 10,
}


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = False

    def resolve(host: str, port: int, *_a: Any, **_: Any) -> list[Any]:
        address = "10.0.0.7" if host == "intranet.example.com" else "8.8.8.8"
        with contextlib.suppress(ValueError):
            address = str(ipaddress.ip_address(host.strip("[]")))  # a literal is itself
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)


def test_tools_round_trip_with_secrets_write_only(
    api: APIClient, org: Organization
) -> None:
    created = api.post(
        "/api/agents/",
        {**AGENT, "http_tools": [TOOL], "mcp_servers": [SERVER]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["http_tools"][0]["secret"] == MASK
    assert body["mcp_servers"][0]["headers"] == {"Authorization": MASK}
    assert SECRET not in created.content.decode()
    assert "Bearer abc" not in created.content.decode()
    agent = AgentProfile.objects.get(pk=body["id"])
    assert agent.http_tools[0]["secret"] == SECRET
    assert agent.http_tools[0]["timeout_s"] == 5.0
    assert agent.mcp_servers[0]["headers"] == {"Authorization": "Bearer abc"}
    assert body["mcp_servers"][0]["transport"] == "streamable-http"  # the default

    # What a read gives, written back, keeps the secrets.
    read = api.get(f"/api/agents/{agent.pk}/").json()
    read["http_tools"][0]["description"] = "注文を調べる"
    patched = api.patch(
        f"/api/agents/{agent.pk}/",
        {"http_tools": read["http_tools"], "mcp_servers": read["mcp_servers"]},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    agent.refresh_from_db()
    assert agent.http_tools[0]["secret"] == SECRET
    assert agent.http_tools[0]["description"] == "注文を調べる"
    assert agent.mcp_servers[0]["headers"] == {"Authorization": "Bearer abc"}

    removed = api.patch(f"/api/agents/{agent.pk}/", {"http_tools": []}, format="json")
    assert removed.status_code == 200
    agent.refresh_from_db()
    assert agent.http_tools == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("http_tools", [{**TOOL, "name": "end_call"}], "end_call is a built-in tool"),
        (
            "http_tools",
            [{**TOOL, "parameters": {"type": "object", "properties": 3}}],
            "not valid JSON Schema",
        ),
        (
            "http_tools",
            [{**TOOL, "url": "https://intranet.example.com/x"}],
            "resolves to 10.0.0.7, a private",
        ),
        ("http_tools", [{**TOOL, "secret": MASK}], "a signing secret of 16"),
        ("http_tools", "nope", "must be a JSON list"),
        ("mcp_servers", [{**SERVER, "url": "http://127.0.0.1:8000/mcp"}], "private"),
        ("mcp_servers", [{**SERVER, "extra": 1}], "extra"),
        ("mcp_servers", [{**SERVER, "transport": "websocket"}], "transport: must be"),
    ],
)
def test_bad_tools_are_400_with_the_reason(
    api: APIClient, org: Organization, field: str, value: Any, message: str
) -> None:
    response = api.post("/api/agents/", {**AGENT, field: value}, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()["error"]["details"][field])
    assert not AgentProfile.objects.exists()


def test_http_tool_named_like_an_allowed_mcp_tool_is_refused(
    api: APIClient, org: Organization
) -> None:
    response = api.post(
        "/api/agents/",
        {
            **AGENT,
            "http_tools": [{**TOOL, "name": "lookup_booking"}],
            "mcp_servers": [{**SERVER, "allowed_tools": ["lookup_booking"]}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "share a name" in " ".join(response.json()["error"]["details"]["http_tools"])


def test_schema_documents_both_fields(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    properties = schema["components"]["schemas"]["AgentProfile"]["properties"]
    http_item = properties["http_tools"]["items"]
    assert set(http_item["properties"]) == {
        "name",
        "description",
        "parameters",
        "url",
        "secret",
        "timeout_s",
    }
    mcp_item = properties["mcp_servers"]["items"]
    assert set(mcp_item["properties"]) == {
        "name",
        "url",
        "headers",
        "allowed_tools",
        "timeout_s",
        "transport",
    }
    assert mcp_item["properties"]["transport"]["enum"] == ["streamable-http", "sse"]
    assert "write-only" in properties["http_tools"]["description"]
