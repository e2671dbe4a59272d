"""WebSocket routes: Twilio's media streams, and the operators' live pages."""

from __future__ import annotations

from typing import Any

twilio_websocket_urlpatterns: list[Any] = []
operator_websocket_urlpatterns: list[Any] = []
