"""Exceptions raised by the pure protocol layer.

::

    ProtocolError                  anything a peer sent that we cannot accept
    ├── TwilioProtocolError        a Media Streams frame from Twilio (carries a code)
    └── RealtimeProtocolError      an event from the OpenAI Realtime server

The codes of ``TwilioProtocolError`` reuse Twilio's own warning numbers, so a log
line reads the same whichever side refused the frame.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ProtocolError",
    "RealtimeProtocolError",
    "TwilioErrorCode",
    "TwilioProtocolError",
]


class TwilioErrorCode(IntEnum):
    """Why a Media Streams frame was refused (Twilio's warning numbers)."""

    MALFORMED_MESSAGE = 31950  # a binary frame, or bytes that are not a message
    INVALID_MESSAGE = 31951  # JSON of the wrong shape, unknown event, bad field


class ProtocolError(Exception):
    """A peer sent something the protocol layer cannot accept."""


class TwilioProtocolError(ProtocolError):
    """A frame from Twilio's Media Streams socket is malformed or invalid."""

    def __init__(self, message: str, *, code: TwilioErrorCode) -> None:
        super().__init__(f"{message} (Twilio {code.value})")
        self.code = code
        self.reason = message


class RealtimeProtocolError(ProtocolError):
    """An event from the OpenAI Realtime server is malformed."""
