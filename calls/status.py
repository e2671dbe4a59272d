"""The call status machine (F-08): which status may follow which.

Kept apart from the models so the table reads on one screen. The one service that
changes a call's status (`calls.services.call_session_transition`) consults it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CallStatus(models.TextChoices):
    INITIATED = "initiated", _("initiated")
    RINGING = "ringing", _("ringing")
    AI_RESPONDING = "ai-responding", _("AI responding")
    TRANSFERRING = "transferring", _("transferring")
    HUMAN_CONNECTED = "human-connected", _("human connected")
    COMPLETED = "completed", _("completed")
    FAILED = "failed", _("failed")
    NO_ANSWER = "no-answer", _("no answer")
    BUSY = "busy", _("busy")
    CANCELED = "canceled", _("canceled")


S = CallStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.NO_ANSWER, S.BUSY, S.CANCELED})
LIVE = frozenset(
    {S.INITIATED, S.RINGING, S.AI_RESPONDING, S.TRANSFERRING, S.HUMAN_CONNECTED}
)

_NOT_ANSWERED = {S.NO_ANSWER, S.BUSY, S.CANCELED, S.FAILED, S.COMPLETED}

TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    # Realtime off or outside rollout goes straight to a human.
    S.INITIATED: frozenset(
        {S.RINGING, S.AI_RESPONDING, S.TRANSFERRING} | _NOT_ANSWERED
    ),
    S.RINGING: frozenset({S.AI_RESPONDING, S.TRANSFERRING} | _NOT_ANSWERED),
    S.AI_RESPONDING: frozenset({S.TRANSFERRING, S.COMPLETED, S.FAILED}),
    # Back to the AI when no one answers the agent leg (F-33).
    S.TRANSFERRING: frozenset(
        {S.HUMAN_CONNECTED, S.AI_RESPONDING, S.COMPLETED, S.FAILED}
    ),
    # Back to the AI when the human leaves and the profile allows it (F-34).
    S.HUMAN_CONNECTED: frozenset({S.AI_RESPONDING, S.COMPLETED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.NO_ANSWER: frozenset(),
    S.BUSY: frozenset(),
    S.CANCELED: frozenset(),
}


class IllegalTransition(Exception):
    """A status change the machine does not allow."""

    def __init__(self, current: str, target: str) -> None:
        self.current, self.target = current, target
        allowed = ", ".join(sorted(TRANSITIONS[CallStatus(current)])) or "none (final)"
        super().__init__(
            f"A call cannot go from '{current}' to '{target}'. Allowed from '{current}': {allowed}."
        )


def check_transition(current: str, target: str) -> bool:
    """Return True if the status changes, False for a repeat; raise if illegal.

    A repeat of the current status (Twilio resends callbacks) is a no-op, not an error.
    """
    current_s, target_s = CallStatus(current), CallStatus(target)
    if current_s == target_s:
        return False
    if target_s not in TRANSITIONS[current_s]:
        raise IllegalTransition(current_s, target_s)
    return True
