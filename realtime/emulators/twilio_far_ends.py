"""Far-end scripts and dialing conditions of the Twilio emulator (no Django).

How the telephone network behaves for a dialer: ``Timings`` (delays),
``FarEnd`` (who picks up a number, how slowly, for how long), ``RestFault``
(how the next create fails) and the helpers a benchmark computes rates and
concurrency with. ``realtime.emulators.twilio_api`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from realtime.emulators.caller import Step
from realtime.emulators.speech_script import Utterance

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "FarEnd",
    "FaultRecord",
    "RestFault",
    "Timings",
    "max_in_window",
    "max_overlap",
]

Behaviour = Literal["answer", "busy", "no-answer", "failed", "machine"]
BEHAVIOURS: Final = ("answer", "busy", "no-answer", "failed", "machine")


# --------------------------------------------------------------------------
# Configuration: timings and far ends


@dataclass(frozen=True, slots=True)
class Timings:
    """How long the emulated network takes; small by default so tests are fast.

    ``pause_scale`` and ``say_s_per_char`` turn TwiML durations into wall time;
    ``no_answer_s=None`` rings for the call's own ``Timeout``.
    """

    setup_s: float = 0.005  # queued → initiated
    ring_s: float = 0.01  # initiated → ringing → answered
    no_answer_s: float | None = 0.03
    amd_s: float = 0.01  # answer → AnsweredBy human/machine_start
    message_end_s: float = 0.02  # answer → machine_end_beep (DetectMessageEnd)
    say_s_per_char: float = 0.0005
    play_s: float = 0.01  # one <Play> of a file
    pause_scale: float = 0.01  # <Pause length="1"/> waits 10 ms
    callback_timeout_s: float = 5.0

    @classmethod
    def realistic(cls) -> Timings:
        """Return the delays of a real call (for the demo)."""
        return cls(
            setup_s=0.3,
            ring_s=3.0,
            no_answer_s=None,
            amd_s=2.5,
            message_end_s=8.0,
            say_s_per_char=0.12,
            play_s=3.0,
            pause_scale=1.0,
            callback_timeout_s=15.0,
        )


@dataclass(frozen=True, slots=True)
class FarEnd:
    """The scripted party an outbound call reaches.

    ``behaviour``: ``answer`` (a human), ``busy``, ``no-answer``, ``failed`` or
    ``machine`` (voicemail: AnsweredBy ``machine_start``, or
    ``machine_end_beep`` with ``MachineDetection=DetectMessageEnd``).
    ``hangup_after_s`` hangs up that long after answering; ``None`` waits for
    the TwiML to end or for ``CallHandle.hang_up()``; ``talk_s=(a, b)`` hangs
    up after ``uniform(a, b)`` seconds instead, drawn from the emulator's
    seeded ``random`` (benchmarks). ``ring_s`` rings that long before
    answering (a slow answer; default ``Timings.ring_s``). ``caller_script``
    drives the simulated caller if the call's TwiML opens a Media Stream.
    """

    behaviour: Behaviour = "answer"
    hangup_after_s: float | None = None
    ring_s: float | None = None  # None: Timings.ring_s
    caller_script: Sequence[Step] | None = None
    talk_s: tuple[float, float] | None = None
    # What the callee says to each <Gather input="speech"> (the legacy path).
    speech_script: Sequence[Utterance] | None = None

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {BEHAVIOURS}")
        if self.talk_s is not None:
            low, high = self.talk_s
            if not 0 <= low <= high:
                raise ValueError("talk_s must be (low, high), 0 <= low <= high")
            if self.hangup_after_s is not None:
                raise ValueError("give hangup_after_s or talk_s, not both")
        for name in ("hangup_after_s", "ring_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")

    def describe(self) -> dict[str, Any]:
        """Return the far end as JSON (what the control API reports)."""
        return {
            "behaviour": self.behaviour,
            "ring_s": self.ring_s,
            "hangup_after_s": self.hangup_after_s,
            "talk_s": None if self.talk_s is None else list(self.talk_s),
            "caller_script": self.caller_script is not None,
            "speech_script": self.speech_script is not None,
        }


@dataclass(frozen=True, slots=True)
class RestFault:
    """How one ``POST …/Calls.json`` fails (``TwilioEmulator.inject_fault``).

    By default the call is not created and the reply is ``status`` with
    Twilio's error body (code 20429 for 429, 20500 for 500, 20503 for 503,
    else ``status``; the ``twilio`` library raises ``TwilioRestException``).
    ``create=True`` is the ambiguous failure: the call IS created and proceeds,
    but the client still gets the error, or nothing at all with ``drop=True``
    (headers, then the connection closes: ``requests`` raises
    ``ChunkedEncodingError``). ``delay_s`` holds the reply (or the drop) that
    long: longer than the client's timeout, it is a timeout.
    """

    status: int = 500
    code: int | None = None
    message: str | None = None
    create: bool = False
    drop: bool = False
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (4xx or 5xx)")
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")

    def error_code(self) -> int:
        """Twilio's error code for this fault."""
        if self.code is not None:
            return self.code
        return {429: 20429, 500: 20500, 503: 20503}.get(self.status, self.status)

    def error_message(self) -> str:
        """Twilio's error message for this fault."""
        if self.message is not None:
            return self.message
        return {
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(self.status, "Error")

    def describe(self) -> dict[str, Any]:
        """Return the fault as JSON (what the control API reports)."""
        return {
            "status": self.status,
            "code": self.error_code(),
            "message": self.error_message(),
            "create": self.create,
            "drop": self.drop,
            "delay_s": self.delay_s,
        }


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault as it happened: ``at`` is ``time.time()``."""

    at: float
    fault: RestFault
    to: str | None
    call_sid: str | None  # the call created anyway (``create=True``)


def max_in_window(times: Iterable[float], window_s: float = 1.0) -> int:
    """Return the most ``times`` in any half-open window ``[t, t + window_s)``."""
    ordered = sorted(times)
    best = first = 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


def max_overlap(intervals: Iterable[tuple[float, float | None]]) -> int:
    """Return the most intervals ``[start, end)`` open at once (end None: open)."""
    edges: list[tuple[float, int]] = []
    for start, end in intervals:
        edges.append((start, 1))
        if end is not None:
            edges.append((end, -1))
    best = current = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same time
        current += step
        best = max(best, current)
    return best
