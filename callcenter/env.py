"""Every setting read from the environment, with its default.

One place so that the README's configuration table and the code cannot drift apart:
`ENV_DEFAULTS` lists each variable, its default and what it means, and the README
table is checked against it by a test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    default: str
    help: str


ENV_DEFAULTS: tuple[EnvVar, ...] = (
    EnvVar(
        "SECRET_KEY",
        "(a fixed local-only key)",
        "Django secret key; set it in production.",
    ),
    EnvVar("DEBUG", "false", "Django debug mode."),
    EnvVar(
        "ALLOWED_HOSTS",
        "localhost,127.0.0.1,[::1]",
        "Comma-separated host names served.",
    ),
    EnvVar(
        "CSRF_TRUSTED_ORIGINS",
        "",
        "Comma-separated origins trusted for CSRF (https://host).",
    ),
    EnvVar(
        "DATABASE_URL", "sqlite:///db.sqlite3", "Database; postgres://… for PostgreSQL."
    ),
    EnvVar(
        "REDIS_URL",
        "",
        "Unset: in-memory channel layer (one process). Set: channels-redis.",
    ),
    EnvVar("PORT", "8000", "Port `make run` serves on."),
    EnvVar(
        "SERVER",
        "uvicorn",
        "ASGI server of `make run`: uvicorn (measured faster, bench/README.md; drains on SIGTERM) or daphne (no drain).",
    ),
    EnvVar(
        "CLUSTER_SERVERS",
        "2",
        "`make cluster`: how many server processes run behind HAProxy.",
    ),
    EnvVar(
        "CLUSTER_SERVER_PORT",
        "",
        "`make cluster`: port of the first server process (the next ones follow it). "
        "Empty: PORT + 1.",
    ),
    EnvVar(
        "HAPROXY",
        "haproxy",
        "`make cluster`: the HAProxy executable (a name on PATH or /usr/sbin, or a path).",
    ),
    EnvVar(
        "DEMO_REALTIME_PORT",
        "8765",
        "Demo mode: port of the built-in fake OpenAI Realtime server.",
    ),
    EnvVar(
        "DEMO_TWILIO_PORT",
        "8766",
        "Demo mode: port of the Twilio emulator (and its /_emulator/ control API).",
    ),
    EnvVar(
        "DEMO_RESPONSES_PORT",
        "8767",
        "Demo mode: port of the built-in fake OpenAI Responses API (the legacy path).",
    ),
    EnvVar(
        "DEMO_SUMMARIES_PORT",
        "8768",
        "Demo mode: port of the fake OpenAI Responses API that writes call summaries.",
    ),
    EnvVar(
        "DEMO_MCP_PORT",
        "8769",
        "Demo mode: port of the demo MCP server (予約システム) the demo agent uses.",
    ),
    EnvVar(
        "PUBLIC_BASE_URL",
        "http://127.0.0.1:8000",
        "Base URL Twilio reaches; https gives wss stream URLs, http gives ws (local use).",
    ),
    EnvVar(
        "OPENAI_API_KEY", "", "OpenAI key. Empty: demo mode against the built-in fake."
    ),
    EnvVar(
        "OPENAI_REALTIME_URL",
        "wss://api.openai.com/v1/realtime",
        "Realtime WebSocket URL.",
    ),
    EnvVar("OPENAI_REALTIME_MODEL", "gpt-realtime", "Default Realtime model."),
    EnvVar(
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "OpenAI REST base URL: the legacy path's text model (Responses API).",
    ),
    EnvVar(
        "LEGACY_TEXT_TIMEOUT_S",
        "8",
        "Legacy path: seconds the text model (and its tools) may take in one turn; "
        "Twilio gives a webhook 15 s. Past it the caller is asked to say it again.",
    ),
    EnvVar(
        "LEGACY_REALTIME_BACKOFF_S",
        "60",
        "After OpenAI Realtime refused a new session, new calls take the legacy "
        "path for this many seconds (F-71).",
    ),
    EnvVar(
        "TWILIO_ACCOUNT_SID",
        "AC00000000000000000000000000000000",
        "Twilio account SID.",
    ),
    EnvVar("TWILIO_AUTH_TOKEN", "", "Twilio auth token (signs webhooks; REST auth)."),
    EnvVar("TWILIO_API_BASE_URL", "https://api.twilio.com", "Twilio REST base URL."),
    EnvVar("TWILIO_FROM_NUMBER", "", "Caller ID for outbound calls (E.164)."),
    EnvVar(
        "TWILIO_VALIDATE_SIGNATURES",
        "true",
        "Reject webhooks without a valid signature.",
    ),
    EnvVar(
        "USE_OPENAI_REALTIME",
        "true",
        "Global switch for the AI; false hands calls to humans.",
    ),
    EnvVar(
        "DEBUG_REALTIME", "false", "Log every OpenAI event (audio payloads elided)."
    ),
    EnvVar(
        "DEBUG_TWILIO",
        "false",
        "Log every Twilio Media Streams event (payloads elided).",
    ),
    EnvVar("MAX_LIVE_CALLS", "50", "Cap on live AI calls across all processes."),
    EnvVar(
        "DB_THREADS",
        "4",
        "Database threads per server process (webhooks, stream setup, the bridges' "
        "writes); each keeps one connection.",
    ),
    EnvVar(
        "DRAIN_TIMEOUT",
        "30",
        "Seconds a SIGTERMed server waits for each live call's quiet moment before "
        "handing it over anyway (F-69), then exits.",
    ),
    EnvVar(
        "DRAIN_NOTICE",
        "2",
        "Seconds a SIGTERMed server answers health 503 but still takes new streams, "
        "before its first hand-over: longer than the balancer takes to drop it.",
    ),
    EnvVar(
        "CAMPAIGN_INBOUND_RESERVE",
        "20",
        "Percent of MAX_LIVE_CALLS campaigns leave free for inbound calls.",
    ),
    EnvVar(
        "CELERY_BROKER_URL",
        "",
        "Celery broker. Empty: REDIS_URL when set, else a filesystem broker in "
        "var/celery (no server needed).",
    ),
    EnvVar(
        "CELERY_FILESYSTEM_DIR",
        "var/celery",
        "Folder of the filesystem broker (and beat's schedule), relative to the project.",
    ),
    EnvVar(
        "GREETING_CACHE_SIZE",
        "256",
        "Greetings whose audio is kept to play the instant a call's stream starts "
        "(F-73), least recently used out; 0 turns the cache off.",
    ),
    EnvVar(
        "SUPERVISOR_GRACE_S",
        "5",
        "Seconds a call waits for a supervisor whose browser dropped while holding "
        "it (barge or take-over) before the AI holds it again (F-75).",
    ),
    EnvVar(
        "GREETING_CACHE_DIR",
        "var/greeting-cache",
        "Folder of the greeting audio cache, relative to the project; processes "
        "sharing it share the cache.",
    ),
    EnvVar(
        "ALLOW_PRIVATE_URLS",
        "false",
        "Let webhooks (and other outgoing calls) reach loopback and private addresses "
        "(SSRF guard off): local tests and benchmarks only.",
    ),
    EnvVar(
        "MCP_TOOLS_TTL_S",
        "300",
        "Seconds a process reuses an MCP server's tool list (its connection stays open "
        "across calls).",
    ),
    EnvVar(
        "MCP_CONNECT_TIMEOUT_S",
        "10",
        "Seconds to connect to an MCP server in the background of a call before it "
        "counts as down.",
    ),
    EnvVar(
        "MCP_RETRY_S",
        "2",
        "Seconds an MCP server found down is not asked again (a call's background "
        "retry then finds it back).",
    ),
    EnvVar(
        "WEBHOOK_FIRST_RETRY_SECONDS",
        "30",
        "Wait before a failed webhook delivery's first retry (0–60 s); each next wait doubles "
        "(at most 1 h), for 24 h.",
    ),
    EnvVar(
        "WEBHOOK_LEASE_SECONDS",
        "120",
        "A webhook delivery handed to a worker and not finished this long after (a dead "
        "worker, a lost message) is handed out again by the sweep.",
    ),
    EnvVar(
        "EMAIL_URL",
        "consolemail://",
        "Email backend for notifications: consolemail:// prints them, "
        "smtp+tls://user:password@host:587 sends them.",
    ),
    EnvVar(
        "DEFAULT_FROM_EMAIL",
        "callcenter@localhost",
        "Sender address of notification emails.",
    ),
    EnvVar(
        "DIALER_LEASE_SECONDS",
        "30",
        "A campaign attempt left dialing without a CallSid this long is reconciled "
        "through Twilio's Calls list by the next dialer tick.",
    ),
    EnvVar(
        "DIALER_TEST_HOOKS",
        "false",
        "Tests only: let DIALER_CRASH_AT kill a dial task at a named point.",
    ),
    EnvVar(
        "DISCLOSURE_PURPOSE_PHRASES",
        "勧誘,営業,ご案内,セールス",
        "A campaign opening must contain one of these (the call's purpose, F-66).",
    ),
    EnvVar(
        "API_THROTTLE_MUTATIONS",
        "120/min",
        "Per-user rate of mutating API requests (POST/PUT/PATCH/DELETE): "
        "N/s, N/min, N/hour or N/day.",
    ),
    EnvVar(
        "API_THROTTLE_OUTBOUND",
        "30/min",
        "Per-user rate of outbound calls placed through the API.",
    ),
    EnvVar(
        "WEBRTC_ICE_SERVERS",
        "[]",
        "Web calls: ICE servers as JSON, shaped like the browser's "
        '([{"urls": "turn:host:3478", "username": "…", "credential": "…"}]); '
        "[] = host candidates only (one machine, a LAN).",
    ),
    EnvVar(
        "WEBRTC_HOST_ADDRESSES",
        "",
        "Web calls: comma-separated addresses offered as host candidates. Empty: "
        "every interface but loopback (aioice's choice); 127.0.0.1 for local tests.",
    ),
    EnvVar(
        "PUBLIC_WEB_CALL_RATE",
        "5/min",
        "Public web calls (/talk/): offers per client IP: N/s, N/min, N/hour or N/day.",
    ),
    EnvVar(
        "PUBLIC_WEB_TOKEN_MAX_AGE",
        "300",
        "Public web calls: seconds the signed token of a /talk/ page stays valid.",
    ),
    EnvVar("LOG_LEVEL", "INFO", "Root log level."),
    EnvVar("LOG_FORMAT", "json", "json (one object a line) or text."),
    EnvVar(
        "PRICE_GPT_REALTIME",
        "4.00,0.40,16.00,32.00,0.40,64.00",
        "USD per 1M tokens for gpt-realtime: text in, text cached, text out, "
        "audio in, audio cached, audio out.",
    ),
    EnvVar(
        "PRICE_GPT_REALTIME_MINI",
        "0.60,0.06,2.40,10.00,0.30,20.00",
        "The same six prices for gpt-realtime-mini.",
    ),
    EnvVar(
        "SUMMARY_OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "Base URL of the OpenAI API (Responses) that writes call summaries (F-76).",
    ),
    EnvVar("SUMMARY_MODEL", "gpt-4.1-mini", "Text model of call summaries."),
    EnvVar(
        "PRICE_SUMMARY_MODEL",
        "0.40,1.60",
        "USD per 1M tokens for the summary model: input, output.",
    ),
    EnvVar(
        "SUMMARY_MAX_ATTEMPTS",
        "3",
        "Tries of a call's summary before it is kept as failed with the reason.",
    ),
    EnvVar(
        "SUMMARY_RETRY_DELAY_S",
        "5",
        "Wait before the first retry of a summary; doubles each time.",
    ),
    EnvVar("SUMMARY_TIMEOUT_S", "30", "Time-out of one summary request (seconds)."),
    EnvVar(
        "PRICE_GPT_4_1_MINI",
        "0.40,0.10,1.60",
        "Legacy path: USD per 1M tokens for gpt-4.1-mini: text in, text cached, "
        "text out.",
    ),
    EnvVar(
        "PRICE_GPT_4_1",
        "2.00,0.50,8.00",
        "Legacy path: the same three prices for gpt-4.1.",
    ),
)

_LOCAL_SECRET_KEY = "local-only-insecure-key-change-me-in-production-0123456789"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _default(name: str) -> str:
    for var in ENV_DEFAULTS:
        if var.name == name:
            return var.default
    raise KeyError(name)


def get_str(name: str) -> str:
    """Return the variable as a string, or its documented default."""
    return env.str(name, default=_default(name))


def get_bool(name: str) -> bool:
    """Return the variable as a boolean (true/false/1/0/yes/no)."""
    return env.bool(name, default=_default(name).lower() in {"true", "1", "yes", "on"})


def get_int(name: str) -> int:
    """Return the variable as an integer."""
    return env.int(name, default=int(_default(name)))


def get_float(name: str) -> float:
    """Return the variable as a number (seconds, say)."""
    return env.float(name, default=float(_default(name)))


def get_list(name: str) -> list[str]:
    """Return a comma-separated variable as a list with blanks dropped."""
    return [item.strip() for item in get_str(name).split(",") if item.strip()]


def get_json_list(name: str) -> list[dict[str, Any]]:
    """Return a variable holding a JSON array of objects (ValueError otherwise)."""
    value = json.loads(get_str(name) or "[]")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{name} must be a JSON array of objects")
    return value


def get_secret_key() -> str:
    """Return SECRET_KEY, falling back to a fixed key fit only for local use."""
    return env.str("SECRET_KEY", default=_LOCAL_SECRET_KEY)


def get_text_prices(name: str) -> dict[str, float]:
    """Parse a text model's three prices (USD per 1M tokens) into named rates."""
    keys = ("text_in", "text_cached", "text_out")
    values = [float(part) for part in get_list(name)]
    if len(values) != len(keys):
        raise ValueError(
            f"{name} needs {len(keys)} comma-separated prices, got {len(values)}"
        )
    return dict(zip(keys, values, strict=True))


def get_prices(name: str) -> dict[str, float]:
    """Parse a six-figure price list (USD per 1M tokens) into named rates."""
    keys = (
        "text_in",
        "text_cached",
        "text_out",
        "audio_in",
        "audio_cached",
        "audio_out",
    )
    values = [float(part) for part in get_list(name)]
    if len(values) != len(keys):
        raise ValueError(
            f"{name} needs {len(keys)} comma-separated prices, got {len(values)}"
        )
    return dict(zip(keys, values, strict=True))
