from __future__ import annotations

from django.urls import path

from calls import webhooks
from calls.legacy import webhooks as legacy_webhooks
from handoff import webhooks as handoff_webhooks

urlpatterns = [
    path("voice/incoming", webhooks.voice_incoming, name="twilio-voice-incoming"),
    path(
        "voice/outbound/<int:call_id>",
        webhooks.voice_outbound,
        name="twilio-voice-outbound",
    ),
    path("amd/<int:call_id>", webhooks.amd_status, name="twilio-amd-status"),
    path("status", webhooks.call_status, name="twilio-call-status-by-sid"),
    path("status/<int:call_id>", webhooks.call_status, name="twilio-call-status"),
    path(
        "recording/status/<int:call_id>",
        webhooks.recording_status,
        name="twilio-recording-status",
    ),
    path(
        "stream-ended/<int:call_id>", webhooks.stream_ended, name="twilio-stream-ended"
    ),
    path(
        "legacy/<int:call_id>/turn",
        legacy_webhooks.legacy_turn,
        name="twilio-legacy-turn",
    ),
    path(
        "conference/status/<int:call_id>",
        handoff_webhooks.conference_status,
        name="twilio-conference-status",
    ),
    path(
        "handoff/agent-status/<int:call_id>",
        handoff_webhooks.agent_status,
        name="twilio-handoff-agent-status",
    ),
]
