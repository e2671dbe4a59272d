"""Drive one simulated call: Twilio's side through the emulator's control API.

The service's side is only watched: its rows (call, events, transcript) are read from
the database it writes, so the command must share the service's DATABASE_URL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.urls import Resolver404, resolve

from agents.models import Operator, PhoneNumber
from calls.models import CallEvent, CallSession, TranscriptEntry
from calls.status import TERMINAL, CallStatus
from realtime.emulators.control import describe
from realtime.simulation.report import SPEAKERS, event_line

START_HINT = (
    "Start the service first, in another terminal: `make run` (no OPENAI_API_KEY: "
    "demo mode, which also starts the emulators), then run this command again "
    "(`--url` for another address; `PORT=… make run` serves elsewhere)."
)
EMULATOR_HINT = (
    "`make run` starts it in demo mode (no OPENAI_API_KEY). With a real key, start "
    "it yourself with the service's token: `python -m realtime.emulators.run "
    '--twilio-only --auth-token "$TWILIO_AUTH_TOKEN"` (and point the service\'s '
    "TWILIO_API_BASE_URL at it for handoffs)."
)
POLL_S = 0.2
FINAL_GRACE_S = 15.0


class SimulationFailed(CommandError):
    """The service or the emulator is missing, or the call went wrong."""


def caller_script(*, turns: int, hang_up: bool) -> list[dict[str, Any]]:
    """The simulated caller's script in the control API's JSON steps."""
    steps: list[dict[str, Any]] = [
        {"wait_audio": True, "ms": 200, "timeout_s": 30},  # the greeting starts
        {"wait_quiet_ms": 800, "timeout_s": 60},  # … and ends
    ]
    for turn in range(turns):
        steps += [
            {"speak_ms": 1400 + 300 * (turn % 3)},
            {"wait_audio": True, "ms": 200, "timeout_s": 30},  # the answer starts
            {"wait_quiet_ms": 800, "timeout_s": 60},  # … and ends
        ]
    if hang_up:
        steps.append({"hang_up": True})
    return steps


# What the caller says on a legacy call (F-72), one line per <Gather>: questions,
# a booking (schedule_appointment), and a goodbye the AI ends with end_call.
LEGACY_LINES = (
    "営業時間を教えてください",
    "明日の午後に予約をお願いします",
    "料金について教えてください",
)
LEGACY_GOODBYE = "以上です。ありがとうございました、失礼します"


def legacy_speech(*, turns: int) -> list[str]:
    """The caller's speech script in the control API's form."""
    lines = [f"say:{LEGACY_LINES[t % len(LEGACY_LINES)]}" for t in range(turns)]
    return [*lines, f"say:{LEGACY_GOODBYE}", "hangup"]


@dataclass
class _Seen:
    """What has been printed already."""

    twilio: dict[str, int] = field(default_factory=dict)  # CallSid → log entries
    transcript: int = 0  # last TranscriptEntry id
    events: int = 0  # last CallEvent id


class Simulation:
    """One simulated call, from the checks before it to the report after it."""

    def __init__(
        self,
        *,
        url: str,
        emulator: str,
        to: str,
        from_: str,
        turns: int,
        handoff_after: float | None,
        talk_seconds: float,
        user: str,
        timeout: float,
        write: Any,
        client: httpx.Client | None = None,
        legacy: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.emulator = emulator.rstrip("/")
        self.to = to
        self.from_ = from_
        self.turns = turns
        self.legacy = legacy
        self.handoff_after = handoff_after
        self.talk_seconds = talk_seconds
        self.user = user
        self.timeout = timeout
        self.write = write
        self.http = client or httpx.Client(timeout=30.0)
        self.started = time.monotonic()
        self.seen = _Seen()
        self.sid = ""
        self.call: CallSession | None = None
        self.stream_up_at: float | None = None
        self.handoff_via = ""
        self.hang_up_at: float | None = None
        self.caller_joined_room = False
        self.heard_ms = 0.0
        self.problems: list[str] = []

    # -- output ------------------------------------------------------------------

    def say(self, who: str, text: str) -> None:
        self.write(f"[{time.monotonic() - self.started:6.1f}s] {who:<8} {text}")

    # -- checks before the call ----------------------------------------------------

    def check_running(self) -> None:
        """Fail with what to start if the service or the emulator is not there."""
        try:
            self.http.get(f"{self.url}/admin/login/", timeout=5.0)
        except httpx.HTTPError as exc:
            raise SimulationFailed(
                f"The service is not running at {self.url} ({_reason(exc)}).\n"
                + START_HINT
            ) from None
        try:
            reply = self.http.get(f"{self.emulator}/_emulator/calls", timeout=5.0)
        except httpx.HTTPError as exc:
            raise SimulationFailed(
                f"No Twilio emulator at {self.emulator} ({_reason(exc)}).\n"
                + EMULATOR_HINT
            ) from None
        if reply.status_code != 200 or "calls" not in _json(reply):
            raise SimulationFailed(
                f"{self.emulator} answers, but it is not the Twilio emulator's control "
                f"API (GET /_emulator/calls → {reply.status_code}).\n" + EMULATOR_HINT
            )
        try:
            routed = PhoneNumber.objects.filter(
                number=self.to, agent__isnull=False
            ).exists()
        except ValidationError as exc:
            raise SimulationFailed(
                f"--to {self.to}: {' '.join(exc.messages)}"
            ) from None
        if not routed:
            raise SimulationFailed(
                f"No agent answers {self.to} in this database: run "
                "`python manage.py seed_demo` (make run does), or pass --to."
            )

    # -- the call ----------------------------------------------------------------------

    def run(self) -> CallSession:
        self.check_running()
        self.place()
        self.call = self.find_call()
        self.say("service", f"call #{self.call.pk} created ({self.call.status})")
        deadline = self.started + self.timeout
        finished_at: float | None = None
        while time.monotonic() < deadline:
            summary = self.poll()
            if summary["finished"] and finished_at is None:
                finished_at = time.monotonic()
            if finished_at is not None and (
                self.call.status in TERMINAL
                or time.monotonic() - finished_at > FINAL_GRACE_S
            ):
                break
            time.sleep(POLL_S)
        else:
            self.problems.append(f"the call did not end within {self.timeout:.0f} s")
            self.say("sim", "timed out: hanging up")
            self.hang_up(self.sid)
        self.hang_up_agent_leg()
        self.poll()
        return self.call

    def place(self) -> None:
        body = {
            "from": self.from_,
            "to": self.to,
            "voice_url": f"{self.url}/api/twilio/voice/incoming",
            "status_callback": f"{self.url}/api/twilio/status",
            "script": caller_script(
                turns=self.turns, hang_up=self.handoff_after is None
            ),
        }
        if self.legacy:
            # No media stream: the caller speaks to Twilio's <Gather>.
            body["script"] = []
            body["speech"] = legacy_speech(turns=self.turns)
        self.say("sim", f"calling {self.to} from {self.from_} via {self.emulator}")
        reply = self.http.post(f"{self.emulator}/_emulator/inbound-calls", json=body)
        if reply.status_code != 201:
            raise SimulationFailed(
                f"The emulator refused the call: {reply.status_code} {reply.text}"
            )
        self.sid = _json(reply)["sid"]

    def find_call(self) -> CallSession:
        for _ in range(50):
            call = CallSession.objects.filter(twilio_call_sid=self.sid).first()
            if call is not None:
                return call
            summary = self.poll_twilio(self.sid, "twilio")
            if summary["finished"]:
                break
            time.sleep(0.1)
        summary = self.poll_twilio(self.sid, "twilio")
        codes = [
            e["detail"].get("status_code")
            for e in summary["log"]
            if e["kind"] == "callback"
        ]
        hint = ""
        if 403 in codes:
            hint = (
                "\nThe service refused the webhook's signature: --url must be the "
                "service's PUBLIC_BASE_URL, and the emulator and the service must "
                "share TWILIO_AUTH_TOKEN (make run sees to both)."
            )
        raise SimulationFailed(
            f"The service created no call for {self.sid} (webhook replies: {codes})."
            + hint
        )

    # -- polling -----------------------------------------------------------------------

    def poll(self) -> dict[str, Any]:
        """Print what happened since the last poll; act on it; return the caller's
        call as the emulator sees it."""
        assert self.call is not None
        summary = self.poll_twilio(self.sid, "twilio")
        self.heard_ms = max(self.heard_ms, float(summary.get("heard_ms") or 0))
        if self.stream_up_at is None and summary.get("stream_up"):
            self.stream_up_at = time.monotonic()
        self.call.refresh_from_db()
        if self.call.handoff_agent_call_sid:
            self.poll_twilio(self.call.handoff_agent_call_sid, "agent")
        self.print_service()
        for entry in summary["log"]:
            if entry["kind"] == "caller-script-error" and not summary["finished"]:
                self.problems.append(f"caller script: {entry['detail'].get('error')}")
                if self.handoff_after is None:
                    self.say("sim", "the caller gives up waiting: hanging up")
                    self.hang_up(self.sid)
                    break
        self.drive_handoff(summary)
        return summary

    def poll_twilio(self, sid: str, who: str) -> dict[str, Any]:
        reply = self.http.get(f"{self.emulator}/_emulator/calls/{sid}")
        if reply.status_code != 200:
            raise SimulationFailed(
                f"The emulator lost call {sid}: {reply.status_code} {reply.text}"
            )
        summary: dict[str, Any] = _json(reply)
        done = self.seen.twilio.get(sid, 0)
        for entry in summary["log"][done:]:
            line = describe(entry["kind"], entry["detail"])
            if line is not None:
                self.say(who, line)
        self.seen.twilio[sid] = len(summary["log"])
        return summary

    def print_service(self) -> None:
        assert self.call is not None
        events = CallEvent.objects.filter(
            call=self.call, pk__gt=self.seen.events
        ).order_by("pk")
        for event in events:
            self.seen.events = event.pk
            self.say("service", event_line(event))
        entries = TranscriptEntry.objects.filter(
            call=self.call, pk__gt=self.seen.transcript
        ).order_by("pk")
        for entry in entries:
            self.seen.transcript = entry.pk
            cut = " (interrupted)" if entry.interrupted else ""
            self.say(SPEAKERS.get(entry.speaker, entry.speaker), f"{entry.text}{cut}")

    # -- handoff ---------------------------------------------------------------------

    def drive_handoff(self, summary: dict[str, Any]) -> None:
        assert self.call is not None
        if self.handoff_after is None or summary["finished"]:
            return
        now = time.monotonic()
        if (
            not self.handoff_via
            and self.stream_up_at is not None
            and now - self.stream_up_at >= self.handoff_after
            and self.call.status == CallStatus.AI_RESPONDING
        ):
            self.request_handoff()
        caller_in_room = any(e["kind"] == "conference-join" for e in summary["log"])
        self.caller_joined_room = self.caller_joined_room or caller_in_room
        if (
            self.handoff_via
            and self.hang_up_at is None
            and caller_in_room
            and self.call.status == CallStatus.HUMAN_CONNECTED
        ):
            self.hang_up_at = now + self.talk_seconds
            self.say(
                "sim",
                "caller and human are in the room; the caller hangs up in "
                f"{self.talk_seconds:g} s",
            )
        if self.hang_up_at is not None and now >= self.hang_up_at:
            self.hang_up_at = float("inf")
            self.say("sim", "the caller hangs up")
            self.hang_up(self.sid)
            self.hang_up_agent_leg()

    def request_handoff(self) -> None:
        assert self.call is not None
        path = f"/api/calls/{self.call.pk}/handoff"
        if _has_route(path):
            token = self.api_token()
            reply = self.http.post(
                f"{self.url}{path}",
                json={"reason": "simulate_call --handoff-after"},
                headers={"Authorization": f"Token {token}"},
            )
            self.say("sim", f"POST {path} as {self.user} → {reply.status_code}")
            if reply.status_code < 300:
                self.handoff_via = f"POST {path} (token of {self.user})"
                return
            self.problems.append(f"handoff API: {reply.status_code} {reply.text}")
            self.handoff_via = "refused"
            return
        digit = self.call.agent.handoff_dtmf_digit if self.call.agent else ""
        if not digit:
            self.problems.append(
                f"no {path} endpoint in this build and the agent has no handoff digit"
            )
            self.handoff_via = "unavailable"
            return
        self.say(
            "sim",
            f"no {path} endpoint in this build: the caller presses {digit!r} "
            "(the agent's handoff digit)",
        )
        reply = self.http.post(
            f"{self.emulator}/_emulator/calls/{self.sid}/dtmf", json={"digit": digit}
        )
        if reply.status_code != 200:
            self.problems.append(f"DTMF refused: {reply.status_code} {reply.text}")
        self.handoff_via = f"keypad digit {digit!r} (no handoff API endpoint yet)"

    def api_token(self) -> str:
        from rest_framework.authtoken.models import Token

        operator = Operator.objects.filter(username=self.user).first()
        if operator is None:
            raise SimulationFailed(
                f"No operator {self.user!r}: run `python manage.py seed_demo`."
            )
        token, _ = Token.objects.get_or_create(user=operator)
        return str(token.key)

    # -- hanging up --------------------------------------------------------------------

    def hang_up(self, sid: str) -> None:
        reply = self.http.post(f"{self.emulator}/_emulator/calls/{sid}/hang-up")
        if reply.status_code != 200:
            self.problems.append(f"hang-up of {sid}: {reply.status_code}")

    def hang_up_agent_leg(self) -> None:
        """The human puts the phone down too (their far end would wait 60 s)."""
        assert self.call is not None
        self.call.refresh_from_db()
        sid = self.call.handoff_agent_call_sid
        if not sid:
            return
        reply = self.http.get(f"{self.emulator}/_emulator/calls/{sid}")
        if reply.status_code == 200 and not _json(reply)["finished"]:
            self.say("sim", "the human hangs up")
            self.hang_up(sid)


# -- helpers ---------------------------------------------------------------------


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reason(exc: httpx.HTTPError) -> str:
    return type(exc).__name__ if not str(exc) else str(exc)


def _has_route(path: str) -> bool:
    """Whether this build of the service has a view for `path` (not the 404 one)."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.url_name not in (None, "api-not-found")
