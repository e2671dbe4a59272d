from __future__ import annotations

from django.urls import path

from calls import webhooks

urlpatterns = [
    path("voice/incoming", webhooks.voice_incoming, name="twilio-voice-incoming"),
    path("status/<int:call_id>", webhooks.call_status, name="twilio-call-status"),
    path(
        "recording/status/<int:call_id>",
        webhooks.recording_status,
        name="twilio-recording-status",
    ),
]
