"""An agent profile's MCP servers: the shape, checked and normalised (issue 18)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agents.mcp_config import mcp_servers_clean
from tests.agents.factories import AgentProfileFactory


def good(**overrides):
    return {
        "name": "booking",
        "url": "https://mcp.example.com/mcp",
        "headers": {"Authorization": "Bearer x"},
        "allowed_tools": ["lookup_booking"],
        "timeout_s": 5,
        **overrides,
    }


@pytest.fixture(autouse=True)
def public_dns(monkeypatch, settings):
    """mcp.example.com resolves to a public address; nothing leaves the machine."""
    settings.ALLOW_PRIVATE_URLS = False
    settings.OPENAI_API_KEY = "sk-test"
    settings.DEMO_MODE = False

    def resolve(host, port, type=0):
        address = {
            "mcp.example.com": "93.184.216.34",
            "inside.example.com": "10.0.0.7",
            "127.0.0.1": "127.0.0.1",
        }
        if host not in address:
            raise OSError("Name or service not known")
        return [(2, 1, 6, "", (address[host], port))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)


def test_a_good_entry_is_normalised():
    entry = good(name=" booking ", allowed_tools=["lookup_booking", "lookup_booking"])
    entry.pop("timeout_s")
    assert mcp_servers_clean([entry]) == [
        {
            "name": "booking",
            "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": "Bearer x"},
            "allowed_tools": ["lookup_booking"],
            "timeout_s": 10.0,
            "transport": "streamable-http",
        }
    ]
    assert mcp_servers_clean(None) == [] and mcp_servers_clean([]) == []
    assert mcp_servers_clean([good(transport="sse")])[0]["transport"] == "sse"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "x"}, "must be a list"),
        (["x"], "MCP server 1: entry: must be an object"),
        ([good(extra=1)], "MCP server 1 (booking): extra: unknown field"),
        ([good(name="予約")], "name: 1–40 letters"),
        ([good(), good()], "MCP server 2 (booking): name: another MCP server"),
        ([good(url="")], "url: a URL is required"),
        ([good(url="ftp://mcp.example.com/")], "url: Only http and https"),
        ([good(url="http://inside.example.com/mcp")], "private, loopback or reserved"),
        ([good(url="http://127.0.0.1:9/mcp")], "private, loopback or reserved"),
        ([good(url="http://nowhere.invalid/mcp")], "does not resolve"),
        ([good(headers=["a"])], "headers: must be an object"),
        ([good(headers={"Bad Name": "x"})], "is not a header name"),
        ([good(headers={"Host": "x"})], "Host is set by the client"),
        ([good(headers={"X-Key": "a\r\nb"})], "line breaks not allowed"),
        ([good(headers={"X-Key": 5})], "the value must be text"),
        ([good(allowed_tools="lookup")], "allowed_tools: must be a list"),
        ([good(allowed_tools=["bad name"])], "is not a tool name"),
        ([good(timeout_s="5")], "timeout_s: must be a number"),
        ([good(timeout_s=True)], "timeout_s: must be a number"),
        ([good(timeout_s=0.1)], "from 0.5 to 60.0 seconds"),
        ([good(transport="stdio")], "transport: must be one of streamable-http, sse"),
        ([good(transport=["sse"])], "transport: must be one of"),
        ([good(name=f"s{i}") for i in range(11)], "At most 10 MCP servers"),
    ],
)
def test_bad_entries_are_refused_naming_the_entry_and_field(value, message):
    with pytest.raises(ValidationError) as refused:
        mcp_servers_clean(value)
    assert message in " ".join(refused.value.messages)


def test_private_urls_pass_when_allowed(settings):
    settings.ALLOW_PRIVATE_URLS = True
    (entry,) = mcp_servers_clean([good(url="http://127.0.0.1:9/mcp")])
    assert entry["url"] == "http://127.0.0.1:9/mcp"


def test_the_demo_server_passes_in_demo_mode_only(settings):
    settings.DEMO_MCP_URL = "http://127.0.0.1:8769/mcp"
    with pytest.raises(ValidationError):
        mcp_servers_clean([good(url=settings.DEMO_MCP_URL)])
    settings.DEMO_MODE = True
    assert mcp_servers_clean([good(url=settings.DEMO_MCP_URL)])[0]["url"] == (
        settings.DEMO_MCP_URL
    )
    with pytest.raises(ValidationError):
        mcp_servers_clean([good(url="http://127.0.0.1:8770/mcp")])


@pytest.mark.django_db
def test_the_profile_checks_its_mcp_servers_on_clean():
    agent = AgentProfileFactory(mcp_servers=[good(url="http://10.1.2.3/mcp")])
    with pytest.raises(ValidationError) as refused:
        agent.full_clean()
    assert "mcp_servers" in refused.value.message_dict
    agent.mcp_servers = [good(timeout_s=None)]
    agent.full_clean()
    assert agent.mcp_servers[0]["timeout_s"] == 10.0
