"""WebSocket routes: Twilio's media streams, and the operators' live pages."""

from __future__ import annotations

from typing import Any

from django.urls import path

from calls.campaigns.consumers import CampaignMonitorConsumer
from calls.consumers import CallMonitorConsumer, DashboardConsumer
from jobs.consumers import JobsConsumer
from realtime.routing import websocket_urlpatterns as media_stream_urlpatterns

twilio_websocket_urlpatterns: list[Any] = [*media_stream_urlpatterns]
# Mounted under `ws/` behind the session and origin checks (callcenter.asgi).
operator_websocket_urlpatterns: list[Any] = [
    path("calls/<int:call_id>/", CallMonitorConsumer.as_asgi()),
    path("dashboard/", DashboardConsumer.as_asgi()),
    path("campaigns/<int:campaign_id>/", CampaignMonitorConsumer.as_asgi()),
    path("jobs/", JobsConsumer.as_asgi()),
]
