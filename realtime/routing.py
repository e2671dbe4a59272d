"""WebSocket route of Twilio's media streams (F-15)."""

from __future__ import annotations

from django.urls import path

from realtime.consumers import MediaStreamConsumer

websocket_urlpatterns = [
    path("api/twilio/media-stream/<int:call_id>", MediaStreamConsumer.as_asgi()),
]
