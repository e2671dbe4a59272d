"""Validation of an agent profile's HTTP tools (F-78): the shape the API and page share.

An entry is `{"name", "description", "parameters", "url", "secret", "timeout_s"}`:
`parameters` must be valid JSON Schema (draft 2020-12) and usable as an OpenAI
function definition (an object schema), the name must be a valid function name that
shadows no built-in tool nor another entry, the URL must be a public http(s) address
(SSRF guard, unless ALLOW_PRIVATE_URLS), the time-out is bounded and the secret signs
every call (write-only: see agents.tool_masking).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator, SchemaError

from notifications.urlsafety import UnsafeURL, resolve_target, url_parts

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FIELDS = ("name", "description", "parameters", "url", "secret", "timeout_s")
MAX_TOOLS = 20
MAX_DESCRIPTION = 1024
MAX_SCHEMA_CHARS = 20_000
SECRET_MIN, SECRET_MAX = 16, 200
TIMEOUT_MIN_S, TIMEOUT_MAX_S, TIMEOUT_DEFAULT_S = 0.5, 30.0, 10.0
URL_MAX = 2000


def entry_error(index: int, name: str, field: str, message: str) -> ValidationError:
    """A ValidationError naming the entry (by position and name) and the field."""
    label = f"#{index + 1}" + (f" ({name})" if name else "")
    return ValidationError(f"{label} {field}: {message}")


def url_check(url: Any, *, fail: Any) -> str:
    """A public (or, with ALLOW_PRIVATE_URLS, any) http(s) URL, checked after DNS."""
    if not isinstance(url, str) or not url.strip():
        raise fail("a URL is required.")
    text: str = url.strip()
    if len(text) > URL_MAX:
        raise fail(f"at most {URL_MAX} characters.")
    try:
        if settings.ALLOW_PRIVATE_URLS:
            url_parts(text)
        else:
            resolve_target(text, allow_private=False)
    except UnsafeURL as exc:
        raise fail(str(exc)) from None
    return text


def timeout_check(value: Any, *, fail: Any, maximum: float = TIMEOUT_MAX_S) -> float:
    if value is None:
        return TIMEOUT_DEFAULT_S
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail("a number of seconds is required.")
    if not TIMEOUT_MIN_S <= float(value) <= maximum:
        raise fail(f"between {TIMEOUT_MIN_S} and {maximum} seconds.")
    return float(value)


def parameters_check(schema: Any, *, fail: Any) -> dict[str, Any]:
    """JSON Schema of the arguments, usable as an OpenAI function's `parameters`."""
    if not isinstance(schema, dict):
        raise fail('a JSON Schema object such as {"type": "object", ...} is required.')
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top level)"
        raise fail(f"not valid JSON Schema at {where}: {exc.message}") from None
    if schema.get("type") != "object":
        raise fail('a function\'s parameters need "type": "object" at the top level.')
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise fail('"properties" must be an object.')
    for key in properties:
        if not NAME_RE.match(key):
            raise fail(
                f"the argument name {key!r} may only use letters, digits, _ and - "
                "(at most 64)."
            )
    required = schema.get("required", [])
    missing = [r for r in required if r not in properties]
    if missing:
        raise fail(f"required argument(s) not in properties: {', '.join(missing)}.")
    if len(json.dumps(schema, ensure_ascii=False)) > MAX_SCHEMA_CHARS:
        raise fail(f"at most {MAX_SCHEMA_CHARS} characters of JSON.")
    return schema


def http_tools_clean(
    value: Any, *, builtin_names: Iterable[str]
) -> list[dict[str, Any]]:
    """The validated HTTP tools of a profile, or ValidationError naming entry and field."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValidationError("HTTP tools must be a JSON list of objects.")
    if len(value) > MAX_TOOLS:
        raise ValidationError(f"At most {MAX_TOOLS} HTTP tools.")
    builtins = set(builtin_names)
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
            raise fail(
                "letters, digits, _ and - only, 1 to 64 characters (OpenAI "
                "function names).",
                "name",
            )
        if name in builtins:
            raise fail(f"{name} is a built-in tool; choose another name.", "name")
        if name in seen:
            raise fail("another HTTP tool has this name.", "name")
        seen.add(name)
        description = entry.get("description", "")
        if not isinstance(description, str) or not description.strip():
            raise fail("say what the tool does (the model reads it).", "description")
        if len(description) > MAX_DESCRIPTION:
            raise fail(f"at most {MAX_DESCRIPTION} characters.", "description")
        if "\x00" in description:
            raise fail("null characters are not allowed.", "description")
        parameters = parameters_check(
            entry.get("parameters", {"type": "object", "properties": {}}),
            fail=lambda m, _f=fail: _f(m, "parameters"),
        )
        url = url_check(entry.get("url"), fail=lambda m, _f=fail: _f(m, "url"))
        secret = entry.get("secret")
        if not isinstance(secret, str) or not SECRET_MIN <= len(secret) <= SECRET_MAX:
            raise fail(
                f"a signing secret of {SECRET_MIN} to {SECRET_MAX} characters is "
                "required.",
                "secret",
            )
        if not secret.isprintable():
            raise fail("printable characters only.", "secret")
        timeout_s = timeout_check(
            entry.get("timeout_s"), fail=lambda m, _f=fail: _f(m, "timeout_s")
        )
        cleaned.append(
            {
                "name": name,
                "description": description.strip(),
                "parameters": parameters,
                "url": url,
                "secret": secret,
                "timeout_s": timeout_s,
            }
        )
    return cleaned


def names_clash_check(http_tools: list[dict[str, Any]], mcp_servers: list[Any]) -> None:
    """Refuse an HTTP tool named like a tool an MCP server of the profile allows.

    MCP servers that allow every tool are only known at call time: there the
    dispatcher keeps the first definition of a name (built-ins, then in order).
    """
    http_names = {t["name"] for t in http_tools}
    for server in mcp_servers:
        if not isinstance(server, dict):
            continue
        clash = sorted(http_names & set(server.get("allowed_tools") or []))
        if clash:
            raise ValidationError(
                f"HTTP tool(s) {', '.join(clash)} share a name with a tool of the "
                f"MCP server {server.get('name', '')}; rename one."
            )
