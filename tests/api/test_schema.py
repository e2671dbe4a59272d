"""The OpenAPI schema: generated without warnings, committed, served, browsable."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from rest_framework.test import APIClient

SCHEMA_FILE = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
REGENERATE = ".venv/bin/python manage.py spectacular --lang en --file docs/openapi.yaml"


def test_committed_schema_is_current_and_warning_free(tmp_path: Path) -> None:
    """docs/openapi.yaml is exactly what the code generates, with no warnings."""
    fresh = tmp_path / "openapi.yaml"
    call_command(
        "spectacular",
        "--lang", "en",
        "--validate",
        "--fail-on-warn",
        "--file", str(fresh),
    )  # fmt: skip
    assert SCHEMA_FILE.exists(), f"docs/openapi.yaml is missing; run: {REGENERATE}"
    assert fresh.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(
        encoding="utf-8"
    ), f"docs/openapi.yaml is out of date with the API; run: {REGENERATE}"


@pytest.mark.django_db
def test_schema_is_served(anon: APIClient) -> None:
    response = anon.get("/api/schema/?format=json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/calls/{call_id}/hangup" in paths and "/api/health" in paths


@pytest.mark.django_db
def test_docs_ui_uses_local_static_files(anon: APIClient) -> None:
    """Swagger UI comes from drf-spectacular-sidecar's static files, not a CDN."""
    response = anon.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    )
    assert "cdn." not in html and "unpkg" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
