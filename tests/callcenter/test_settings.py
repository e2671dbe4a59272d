from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.env import BASE_DIR, ENV_DEFAULTS

SPEC_VARIABLES = {
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_REALTIME_URL",
    "OPENAI_REALTIME_MODEL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "TWILIO_FROM_NUMBER",
    "TWILIO_VALIDATE_SIGNATURES",
    "USE_OPENAI_REALTIME",
    "DEBUG_REALTIME",
    "DEBUG_TWILIO",
    "MAX_LIVE_CALLS",
}


def test_every_spec_variable_is_read():
    assert {v.name for v in ENV_DEFAULTS} >= SPEC_VARIABLES


def test_readme_documents_every_variable():
    """The README's configuration table lists each variable the code reads."""
    readme = (Path(BASE_DIR) / "README.md").read_text(encoding="utf-8")
    for var in ENV_DEFAULTS:
        assert f"`{var.name}`" in readme, var.name


def _settings_in_subprocess(env: dict[str, str], expr: str) -> str:
    code = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE']='callcenter.settings'; "
        f"from django.conf import settings; print({expr})"
    )
    clean = {"PATH": "/usr/bin:/bin", **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=clean,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_defaults_are_sqlite_and_in_memory_layer():
    out = _settings_in_subprocess(
        {},
        "settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND']",
    )
    assert "sqlite3" in out and "InMemoryChannelLayer" in out


def test_urls_switch_to_postgres_and_redis():
    out = _settings_in_subprocess(
        {
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        },
        "settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND']",
    )
    assert "postgresql" in out and "RedisChannelLayer" in out


def test_demo_mode_without_key():
    assert _settings_in_subprocess({}, "settings.DEMO_MODE") == "True"
    assert (
        _settings_in_subprocess({"OPENAI_API_KEY": "sk-x"}, "settings.DEMO_MODE")
        == "False"
    )


def test_webhook_settings():
    out = _settings_in_subprocess(
        {},
        "settings.ALLOW_PRIVATE_URLS, settings.WEBHOOK_FIRST_RETRY_SECONDS, "
        "settings.EMAIL_BACKEND",
    )
    assert out == "False 30.0 django.core.mail.backends.console.EmailBackend"
    out = _settings_in_subprocess(
        {
            "ALLOW_PRIVATE_URLS": "true",
            "EMAIL_URL": "smtp+tls://u:p@mail.example.jp:587",
        },
        "settings.ALLOW_PRIVATE_URLS, settings.EMAIL_HOST, settings.EMAIL_PORT, "
        "settings.EMAIL_USE_TLS",
    )
    assert out == "True mail.example.jp 587 True"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        _settings_in_subprocess({"WEBHOOK_FIRST_RETRY_SECONDS": "90"}, "settings.DEBUG")
    assert "at most 60" in refused.value.stderr
