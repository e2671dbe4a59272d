"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def demo_mode(request: HttpRequest) -> dict[str, Any]:
    """Tell every page whether the service runs against the fake Realtime (F-45)."""
    return {"demo_mode": bool(getattr(settings, "DEMO_MODE", False))}
