"""WebSocket routes: Twilio's media streams, and the operators' live pages."""

from __future__ import annotations

from typing import Any

from django.urls import path

from calls.consumers import CallMonitorConsumer, DashboardConsumer

twilio_websocket_urlpatterns: list[Any] = []
# Mounted under `ws/` behind the session and origin checks (callcenter.asgi).
operator_websocket_urlpatterns: list[Any] = [
    path("calls/<int:call_id>/", CallMonitorConsumer.as_asgi()),
    path("dashboard/", DashboardConsumer.as_asgi()),
]
