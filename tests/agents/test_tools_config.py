"""Validation of an agent's HTTP tools and MCP servers (F-78), and write-only secrets."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from agents.http_tools_config import http_tools_clean, names_clash_check
from agents.mcp_config import mcp_servers_clean
from agents.models import TOOL_NAMES
from agents.tool_masking import (
    MASK,
    http_tools_masked,
    http_tools_unmasked,
    mcp_servers_masked,
    mcp_servers_unmasked,
)

SECRET = "tool-secret-0123456789"


def tool(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "lookup_order",
        "description": "注文を番号で調べる",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
        "url": "https://tools.example.com/lookup",
        "secret": SECRET,
        "timeout_s": 5,
        **overrides,
    }


def server(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "booking",
        "url": "https://mcp.example.com/mcp",
        "headers": {"Authorization": "Bearer abc"},
        "allowed_tools": ["lookup_booking"],
        "timeout_s": 10,
        **overrides,
    }


@pytest.fixture
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolve to a public address (IP literals to themselves); no network."""

    def resolve(host: str, port: int, *_a: Any, **_: Any) -> list[Any]:
        address = "127.0.0.1" if host in ("localhost", "internal.test") else "8.8.8.8"
        with contextlib.suppress(ValueError):
            address = str(ipaddress.ip_address(host.strip("[]")))  # a literal is itself
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)


def clean(value: Any) -> list[dict[str, Any]]:
    return http_tools_clean(value, builtin_names=TOOL_NAMES)


def error_of(func: Any, value: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        func(value)
    return " ".join(caught.value.messages)


def test_a_valid_tool_is_kept_with_defaults(public_dns: None, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    entry = tool()
    del entry["timeout_s"]
    [cleaned] = clean([entry])
    assert cleaned["timeout_s"] == 10.0
    assert cleaned["secret"] == SECRET
    assert clean(None) == [] and clean([]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "end_call"}, "#1 (end_call) name: end_call is a built-in tool"),
        ({"name": "has space"}, "name: letters, digits, _ and - only"),
        ({"name": "x" * 65}, "name: letters, digits, _ and - only"),
        ({"description": " "}, "description: say what the tool does"),
        ({"parameters": {"type": "array"}}, 'parameters need "type": "object"'),
        (
            {"parameters": {"type": "object", "properties": {"a": {"type": "nope"}}}},
            "parameters: not valid JSON Schema at properties/a/type",
        ),
        (
            {"parameters": {"type": "object", "properties": {}, "required": ["a"]}},
            "required argument(s) not in properties: a",
        ),
        ({"parameters": "object"}, "parameters: a JSON Schema object"),
        ({"url": "ftp://tools.example.com/x"}, "url: Only http and https URLs"),
        ({"url": ""}, "url: a URL is required."),
        ({"secret": "short"}, "secret: a signing secret of 16 to 200 characters"),
        ({"secret": None}, "secret: a signing secret"),
        ({"timeout_s": 0.1}, "timeout_s: between 0.5 and 30.0 seconds."),
        ({"timeout_s": 31}, "timeout_s: between 0.5 and 30.0 seconds."),
        ({"timeout_s": "5"}, "timeout_s: a number of seconds is required."),
        ({"headers": {}}, "entry: unknown key(s) headers."),
    ],
)
def test_bad_tools_are_refused_naming_entry_and_field(
    public_dns: None, settings: Any, change: dict[str, Any], message: str
) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    assert message in error_of(clean, [tool(**change)])


def test_names_may_not_repeat_and_the_list_is_bounded(public_dns: None) -> None:
    assert "#2 (lookup_order) name: another HTTP tool has this name." in error_of(
        clean, [tool(), tool()]
    )
    many = [tool(name=f"t{i}") for i in range(21)]
    assert "At most 20 HTTP tools." in error_of(clean, many)
    assert "must be a JSON list" in error_of(clean, {"name": "x"})


def test_ssrf_private_urls_refused_at_save(public_dns: None, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    for url in (
        "http://127.0.0.1:8080/x",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "http://internal.test/x",
        "http://169.254.169.254/latest/meta-data",
    ):
        message = error_of(clean, [tool(url=url)])
        assert "url:" in message and "private, loopback or reserved" in message
    settings.ALLOW_PRIVATE_URLS = True
    assert clean([tool(url="http://127.0.0.1:8080/x")])[0]["url"].startswith(
        "http://127.0.0.1"
    )


def test_mcp_servers_validated(public_dns: None, settings: Any) -> None:
    settings.ALLOW_PRIVATE_URLS = False
    [cleaned] = mcp_servers_clean([server(allowed_tools=["a", "a", "b"])])
    assert cleaned["allowed_tools"] == ["a", "b"]
    # Wording shared with h18-mcp's validator (its version replaces ours at merge).
    duplicate = error_of(mcp_servers_clean, [server(), server()])
    assert "(booking)" in duplicate
    assert "name: another MCP server has this name." in duplicate
    assert "url:" in error_of(mcp_servers_clean, [server(url="http://10.1.2.3/mcp")])
    assert "headers: 'Bad Header' is not a" in error_of(
        mcp_servers_clean, [server(headers={"Bad Header": "x"})]
    )
    injected = error_of(mcp_servers_clean, [server(headers={"X": "a\r\nInjected: 1"})])
    assert "headers:" in injected and "X" in injected
    assert "allowed_tools:" in error_of(
        mcp_servers_clean, [server(allowed_tools="all")]
    )
    too_long = error_of(mcp_servers_clean, [server(timeout_s=61)])
    assert "timeout_s:" in too_long and "60.0" in too_long


def test_http_tool_may_not_share_a_name_with_an_allowed_mcp_tool() -> None:
    with pytest.raises(ValidationError, match="share a name with a tool of the MCP"):
        names_clash_check([tool(name="lookup_booking")], [server()])
    names_clash_check([tool()], [server(allowed_tools=[])])


def test_secrets_are_masked_and_kept_when_sent_back_masked(public_dns: None) -> None:
    stored_tools = [tool()]
    shown = http_tools_masked(stored_tools)
    assert shown[0]["secret"] == MASK and stored_tools[0]["secret"] == SECRET
    assert http_tools_unmasked(shown, stored_tools)[0]["secret"] == SECRET
    without = [{k: v for k, v in shown[0].items() if k != "secret"}]
    assert http_tools_unmasked(without, stored_tools)[0]["secret"] == SECRET
    # A new tool sent masked has nothing to keep: the validator asks for a secret.
    assert "secret" not in http_tools_unmasked([tool(name="new", secret=MASK)], [])[0]
    new_secret = "another-secret-0123456789"
    assert (
        http_tools_unmasked([tool(secret=new_secret)], stored_tools)[0]["secret"]
        == new_secret
    )

    stored_servers = [server()]
    shown_servers = mcp_servers_masked(stored_servers)
    assert shown_servers[0]["headers"] == {"Authorization": MASK}
    kept = mcp_servers_unmasked(shown_servers, stored_servers)
    assert kept[0]["headers"] == {"Authorization": "Bearer abc"}
    unknown = mcp_servers_unmasked([server(headers={"X-Key": MASK})], stored_servers)
    assert unknown[0]["headers"] == {"X-Key": None}
    kept_nothing = error_of(mcp_servers_clean, unknown)
    assert "headers:" in kept_nothing and "X-Key" in kept_nothing


@pytest.mark.django_db
def test_admin_shows_tool_secrets_masked(client: Any, settings: Any) -> None:
    from django.urls import reverse

    from agents.models import Operator
    from tests.agents.factories import AgentProfileFactory

    settings.ALLOW_PRIVATE_URLS = True
    agent = AgentProfileFactory(
        http_tools=[tool(url="http://127.0.0.1:9/x")],
        mcp_servers=[server(url="http://127.0.0.1:9/mcp")],
    )
    client.force_login(Operator.objects.create_superuser("root", "r@example.com", "pw"))
    html = client.get(
        reverse("admin:agents_agentprofile_change", args=[agent.pk])
    ).content.decode()
    assert "http_tools" in html and "mcp_servers" in html
    assert SECRET not in html and "Bearer abc" not in html
    assert MASK in html


def test_unmasking_survives_names_that_are_not_text() -> None:
    """Schemathesis sent `"name": {}`: the validator, not a crash, answers it."""
    odd = [{"name": {}, "secret": MASK, "headers": {"X": MASK}}]
    assert http_tools_unmasked(odd, [tool()]) == [{"name": {}, "headers": {"X": MASK}}]
    assert mcp_servers_unmasked(odd, [server()])[0]["headers"] == {"X": None}
    assert "name:" in error_of(mcp_servers_clean, [{"name": {}}])
