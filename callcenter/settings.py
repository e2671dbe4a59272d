"""Django settings. Every value that varies between machines comes from callcenter.env."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from callcenter import env as E

BASE_DIR = E.BASE_DIR

SECRET_KEY = E.get_secret_key()
DEBUG = E.get_bool("DEBUG")
ALLOWED_HOSTS = E.get_list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = E.get_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "agents",
    "calls",
    "realtime",
    "handoff",
    "notifications",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "callcenter.logging.RequestCallIdMiddleware",
]

ROOT_URLCONF = "callcenter.urls"
ASGI_APPLICATION = "callcenter.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "callcenter.context_processors.demo_mode",
            ],
        },
    },
]

if E.env.str("DATABASE_URL", default=""):
    DATABASES = {"default": E.env.db_url("DATABASE_URL")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with this process's writers queued in Python rather than
    # asleep in SQLite's busy handler (callcenter/db_sqlite3/base.py).
    DATABASES["default"]["ENGINE"] = "callcenter.db_sqlite3"
    # Calls write from many coroutines' threads: wait for the lock instead of failing,
    # take the write lock up front, and let readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file, not shared-cache memory: bridge threads write beside the
    # request threads, and memory databases lock whole tables at once. One file per
    # process, so parallel test runs never share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(
            Path(tempfile.gettempdir()) / f"callcenter-test-{os.getpid()}.sqlite3"
        )
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = E.get_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, the same as
                # channels-redis' 5 s blocking pop: an idle consumer's read then times
                # out and kills the consumer (and its call). Give reads room.
                # A Redis that is down or unreachable is noticed in 2 s, not the
                # system's connect time-out: calls go on without it (F-71).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 2,
                    }
                ],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_USER_MODEL = "agents.Operator"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Tokyo"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"

REST_FRAMEWORK = {
    # Token first: an unauthenticated request gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "callcenter.api_docs.AutoSchema",
    "EXCEPTION_HANDLER": "callcenter.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "callcenter.api.Pagination",
    "PAGE_SIZE": 50,
    # Per user (token): anonymous requests are refused before they are counted.
    "DEFAULT_THROTTLE_CLASSES": ["callcenter.api.MutationRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "mutations": E.get_str("API_THROTTLE_MUTATIONS"),
        "outbound": E.get_str("API_THROTTLE_OUTBOUND"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI call center API",
    "DESCRIPTION": "Calls, live control, outbound calls, agent profiles, customers "
    "and appointments of your organisation. Every failure has the body "
    '`{"error": {"code", "message", "details"}}`; see docs/API.md.',
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response shapes apart: read-only fields are not inputs.
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CallStatusEnum": "calls.status.CallStatus",
        "ErrorCodeEnum": "callcenter.api_docs.ERROR_CODE_CHOICES",
        "RecordingStatusEnum": "calls.models.Recording.Status",
        "CampaignStatusEnum": "calls.campaigns.models.Campaign.Status",
        "ContactStatusEnum": "calls.campaigns.models.Contact.Status",
        "SupervisionActionEnum": "calls.api.supervision_views.ACTION_CHOICES",
        "SupervisionHistoryActionEnum": (
            "calls.api.supervision_views.HISTORY_ACTION_CHOICES"
        ),
    },
    # Swagger UI from our own static files (drf-spectacular-sidecar), no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Telephony and the model.
PUBLIC_BASE_URL = E.get_str("PUBLIC_BASE_URL").rstrip("/")
OPENAI_API_KEY = E.get_str("OPENAI_API_KEY")
OPENAI_REALTIME_URL = E.get_str("OPENAI_REALTIME_URL")
OPENAI_REALTIME_MODEL = E.get_str("OPENAI_REALTIME_MODEL")
OPENAI_BASE_URL = E.get_str("OPENAI_BASE_URL").rstrip("/")
LEGACY_TEXT_TIMEOUT_S = E.get_float("LEGACY_TEXT_TIMEOUT_S")
LEGACY_REALTIME_BACKOFF_S = E.get_float("LEGACY_REALTIME_BACKOFF_S")
TWILIO_ACCOUNT_SID = E.get_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = E.get_str("TWILIO_AUTH_TOKEN")
TWILIO_API_BASE_URL = E.get_str("TWILIO_API_BASE_URL").rstrip("/")
TWILIO_FROM_NUMBER = E.get_str("TWILIO_FROM_NUMBER")
# Places outbound calls: a callable(call) -> Twilio call SID (tests plug in a fake).
TWILIO_DIALER = "calls.twilio_client.dial_outbound"
TWILIO_VALIDATE_SIGNATURES = E.get_bool("TWILIO_VALIDATE_SIGNATURES")
USE_OPENAI_REALTIME = E.get_bool("USE_OPENAI_REALTIME")
DEBUG_REALTIME = E.get_bool("DEBUG_REALTIME")
DEBUG_TWILIO = E.get_bool("DEBUG_TWILIO")
MAX_LIVE_CALLS = E.get_int("MAX_LIVE_CALLS")
# The async server's database work runs on this many threads (callcenter/db.py).
DB_THREADS = E.get_int("DB_THREADS")
# Campaign calls never take the last CAMPAIGN_INBOUND_RESERVE % of MAX_LIVE_CALLS.
CAMPAIGN_INBOUND_RESERVE = E.get_int("CAMPAIGN_INBOUND_RESERVE")
# A dial task owns its attempt this long (its REST requests time out well inside it);
# then the tick hands the attempt to a new task, which reconciles before any create.
DIALER_LEASE_SECONDS = E.get_int("DIALER_LEASE_SECONDS")
# Tests only: DIALER_CRASH_AT=<point>:<marker file> SIGKILLs the dial task once.
DIALER_TEST_HOOKS = E.get_bool("DIALER_TEST_HOOKS")
DISCLOSURE_PURPOSE_PHRASES = E.get_list("DISCLOSURE_PURPOSE_PHRASES")
# The web voice channel (F-74).
WEBRTC_ICE_SERVERS = E.get_json_list("WEBRTC_ICE_SERVERS")
WEBRTC_HOST_ADDRESSES = E.get_list("WEBRTC_HOST_ADDRESSES")
PUBLIC_WEB_CALL_RATE = E.get_str("PUBLIC_WEB_CALL_RATE")
PUBLIC_WEB_TOKEN_MAX_AGE = E.get_int("PUBLIC_WEB_TOKEN_MAX_AGE")
# Demo mode (F-45): no OpenAI key means the built-in fake Realtime server answers.
DEMO_MODE = not OPENAI_API_KEY
# After the call (F-76): the text model that writes summaries and extracts fields.
SUMMARY_OPENAI_BASE_URL = E.get_str("SUMMARY_OPENAI_BASE_URL")
SUMMARY_MODEL = E.get_str("SUMMARY_MODEL")
SUMMARY_PRICES = dict(
    zip(("input", "output"), map(float, E.get_list("PRICE_SUMMARY_MODEL")), strict=True)
)
SUMMARY_MAX_ATTEMPTS = E.get_int("SUMMARY_MAX_ATTEMPTS")
SUMMARY_RETRY_DELAY_S = E.get_float("SUMMARY_RETRY_DELAY_S")
SUMMARY_TIMEOUT_S = E.get_float("SUMMARY_TIMEOUT_S")
REALTIME_PRICES = {
    "gpt-realtime": E.get_prices("PRICE_GPT_REALTIME"),
    "gpt-realtime-mini": E.get_prices("PRICE_GPT_REALTIME_MINI"),
}
# The legacy path's text models (F-72).
TEXT_PRICES = {
    "gpt-4.1-mini": E.get_text_prices("PRICE_GPT_4_1_MINI"),
    "gpt-4.1": E.get_text_prices("PRICE_GPT_4_1"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"call_id": {"()": "callcenter.logging.CallIdFilter"}},
    "formatters": {
        "json": {"()": "callcenter.logging.JsonFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s call=%(call_id)s %(message)s"
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["call_id"],
            "formatter": E.get_str("LOG_FORMAT"),
        }
    },
    "root": {"handlers": ["console"], "level": E.get_str("LOG_LEVEL")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # A line per dialer tick (beat sends one a second, the worker takes it) and
        # the twilio library's dump of every request drown what matters.
        "celery.beat": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "twilio.http_client": {"level": "WARNING"},
        # The MCP SDK's HTTP client logs every request (a line per tool call).
        "httpx2": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
    },
}

# The instant greeting (F-73): cached greeting audio, shared by this machine's processes.
GREETING_CACHE_SIZE = E.get_int("GREETING_CACHE_SIZE")
GREETING_CACHE_DIR = BASE_DIR / E.get_str("GREETING_CACHE_DIR")

# The supervisor console (F-75): how long a dropped supervisor keeps a call they hold.
SUPERVISOR_GRACE_S = E.get_float("SUPERVISOR_GRACE_S")

# Celery (F-62): the dialer's tick and dials. Redis in production; with nothing set, a
# filesystem broker in var/celery so `make run` dials on a machine with no servers.
CELERY_BROKER_URL = E.get_str("CELERY_BROKER_URL") or E.get_str("REDIS_URL")
CELERY_FILESYSTEM_DIR = BASE_DIR / E.get_str("CELERY_FILESYSTEM_DIR")
if not CELERY_BROKER_URL:
    # kombu's filesystem transport, written atomically (callcenter/broker.py).
    CELERY_BROKER_URL = "fsatomic://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FILESYSTEM_DIR / "queue"),
        "data_folder_out": str(CELERY_FILESYSTEM_DIR / "queue"),
        "control_folder": str(CELERY_FILESYSTEM_DIR / "control"),
        # The folder is polled: a tick or a dial waits at most this long (seconds).
        "polling_interval": 0.2,
    }
    for _key in ("data_folder_in", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[_key]).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "dialer-tick": {
        "task": "calls.campaigns.tasks.dialer_tick",
        "schedule": 1.0,
        # A tick nobody ran in time is dropped: the next one does its work.
        "options": {"expires": 2.0},
    },
    # Webhook retries that are due, and deliveries a dead worker left (F-77).
    "webhook-sweep": {
        "task": "notifications.tasks.sweep",
        "schedule": 5.0,
        "options": {"expires": 10.0},
    },
}

# Webhooks (F-77): loopback and private addresses are refused unless this is on.
ALLOW_PRIVATE_URLS = E.get_bool("ALLOW_PRIVATE_URLS")

# MCP servers of agent profiles (issue 18): the per-process pool.
MCP_TOOLS_TTL_S = E.get_float("MCP_TOOLS_TTL_S")
MCP_CONNECT_TIMEOUT_S = E.get_float("MCP_CONNECT_TIMEOUT_S")
MCP_RETRY_S = E.get_float("MCP_RETRY_S")
if MCP_TOOLS_TTL_S < 0 or MCP_CONNECT_TIMEOUT_S <= 0 or MCP_RETRY_S < 0:
    raise ValueError(
        "MCP_TOOLS_TTL_S and MCP_RETRY_S must be ≥ 0, MCP_CONNECT_TIMEOUT_S > 0"
    )
# The demo's MCP server (make run, demo mode); its loopback URL passes the SSRF guard.
DEMO_MCP_PORT = E.get_int("DEMO_MCP_PORT")
DEMO_MCP_URL = f"http://127.0.0.1:{DEMO_MCP_PORT}/mcp"
WEBHOOK_FIRST_RETRY_SECONDS = E.get_float("WEBHOOK_FIRST_RETRY_SECONDS")
if not 0 < WEBHOOK_FIRST_RETRY_SECONDS <= 60:
    raise ValueError(
        "WEBHOOK_FIRST_RETRY_SECONDS must be more than 0 and at most 60 "
        "(the first retry comes within a minute, SPEC F-77)."
    )
WEBHOOK_LEASE_SECONDS = E.get_float("WEBHOOK_LEASE_SECONDS")
# Email (the job-created email): the console in `make run`, SMTP with smtp://….
_EMAIL = E.env.email_url_config(E.get_str("EMAIL_URL"))
EMAIL_BACKEND = _EMAIL["EMAIL_BACKEND"]
EMAIL_HOST = _EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _EMAIL.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _EMAIL.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_EMAIL.get("EMAIL_USE_SSL"))
DEFAULT_FROM_EMAIL = E.get_str("DEFAULT_FROM_EMAIL")
