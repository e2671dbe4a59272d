"""Conference Participants of the Twilio emulator: create, fetch, list (no Django).

``POST /2010-04-01/Accounts/{AC}/Conferences/{CF… or FriendlyName}/Participants.json``
dials ``To`` from ``From`` (an ``outbound-api`` call with the far end scripted for
that number, as ``Calls.json`` would) and, once answered, puts it in the room
with the settings given: ``Muted``, ``Coaching`` / ``CallSidToCoach``, ``Beep``,
``StartConferenceOnEnter``, ``EndConferenceOnExit``, ``WaitUrl``, ``Label``, the
call's ``StatusCallback``/``StatusCallbackMethod``/``StatusCallbackEvent`` and
the room's ``ConferenceStatusCallback``/``…Method``/``…Event``, ``Timeout``,
``TimeLimit``. The leg runs ``<Dial><Conference …>room</Conference></Dial>``,
which is what Twilio does, so the room's rules (``ConferenceRules``) apply as for
any other participant. A friendly name with no room yet creates it (Twilio does);
an unknown ``CF…`` SID is a 404.

Who hears whom (``audible``): a muted participant is heard by no one; a coach
(``Coaching=true``) is heard only by the participant it coaches, and hears
everyone; everyone else hears everyone else once the room has started.

Bad input is refused before anything is dialled, with Twilio's codes: 21201 no
``To``, 21213 no ``From``, 21211/21212 an invalid number, 21200 a parameter with
a value Twilio does not accept (a flag that is not true/false, a ``Beep`` or an
event it does not know, ``Coaching=true`` without ``CallSidToCoach``, a
``CallSidToCoach`` that is not in the room, a room that has ended), 20404 no such
conference or participant.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

from realtime.emulators import twiml
from realtime.emulators.twilio_resources import (
    API_VERSION,
    Call,
    ConferenceRoom,
    rfc2822,
    utc_now,
)
from realtime.emulators.twilio_rest import Form, RestError

__all__ = ["PARTICIPANTS_PATH", "ParticipantRules", "audible"]

PARTICIPANTS_PATH: Final = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Conferences/(?P<room>[^/]+)"
    r"/Participants(?:/(?P<sid>[^/]+))?\.json$"
)
_CONFERENCE_SID: Final = re.compile(r"^CF[0-9a-f]{32}$")
_BEEPS: Final = frozenset({"true", "false", "onEnter", "onExit"})
# Participant status as the resource shows it, from the leg's call status.
_STATUS_OF_CALL: Final = {
    "queued": "queued",
    "ringing": "ringing",
    "in-progress": "connecting",
}


def audible(room: ConferenceRoom, *, speaker: str, listener: str) -> bool:
    """Does ``listener`` (a CallSid in the room) hear ``speaker``'s audio?"""
    talking = room.participants.get(speaker)
    if talking is None or listener not in room.participants or speaker == listener:
        return False
    if not room.started or talking.settings.muted:
        return False
    coached = talking.settings.coach
    return coached is None or coached == listener


def _flag(form: Form, name: str, default: bool) -> bool:
    value = form.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise RestError(400, 21200, f"{name} must be true or false, got {value!r}")
    return value.lower() == "true"


class ParticipantRules:
    """The Participants resource; mixed into ``TwilioEmulator``."""

    if TYPE_CHECKING:  # provided by TwilioEmulator
        account_sid: str
        calls: dict[str, Call]
        conferences: dict[str, ConferenceRoom]
        _rooms: dict[tuple[str, str], ConferenceRoom]
        # Which room each leg created here was dialled into, and its settings.
        _participant_legs: dict[str, tuple[ConferenceRoom, twiml.Conference]]

        def _room(self, account_sid: str, name: str) -> ConferenceRoom: ...

        def _create_call(self, form: Form) -> Call: ...

    def _participants_route(
        self, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Answer ``…/Conferences/{room}/Participants[/{CallSid}].json``."""
        match = PARTICIPANTS_PATH.match(path)
        if match is None or match["account"] != self.account_sid:
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        sid = match["sid"]
        if method == "POST" and sid is None:
            return 201, self._participant_create(match["room"], Form(body))
        if method != "GET":
            raise RestError(405, 20004, "Method not allowed")
        room = self._existing_room(match["room"], path)
        if sid is None:
            legs = [self._participant_resource(room, s) for s in room.participants]
            return 200, {"participants": legs, "uri": path, "page": 0}
        if sid not in room.participants and (
            self._participant_legs.get(sid, (None,))[0] is not room
        ):
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        return 200, self._participant_resource(room, sid)

    def _existing_room(self, ref: str, path: str) -> ConferenceRoom:
        room = self.conferences.get(ref)
        if room is None and not _CONFERENCE_SID.match(ref):
            room = self._rooms.get((self.account_sid, ref))
        if room is None or room.account_sid != self.account_sid:
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        return room

    def _participant_create(self, ref: str, form: Form) -> dict[str, Any]:
        """Validate, dial the leg into the room, and return its resource."""
        if _CONFERENCE_SID.match(ref):
            room = self.conferences.get(ref)
            if room is None or room.account_sid != self.account_sid:
                raise RestError(404, 20404, f"Conference {ref} was not found")
        else:
            room = self._room(self.account_sid, ref)  # Twilio creates it
        if room.status == "completed":
            raise RestError(400, 21200, f"Conference {room.sid} has ended")
        coach = form.get("CallSidToCoach") or None
        coaching = _flag(form, "Coaching", coach is not None)
        if coaching and coach is None:
            raise RestError(
                400, 21200, "CallSidToCoach is required when Coaching is true"
            )
        if coach is not None and coach not in room.participants:
            raise RestError(
                400, 21200, f"CallSidToCoach {coach} is not a participant of {room.sid}"
            )
        beep = form.get("Beep") or "true"
        if beep not in _BEEPS:
            raise RestError(400, 21200, f"Invalid Beep {beep!r}")
        room_events = frozenset(
            e
            for value in form.getlist("ConferenceStatusCallbackEvent")
            for e in value.split()
        )
        unknown = room_events - twiml.CONFERENCE_EVENTS
        if unknown:
            raise RestError(
                400, 21200, f"Invalid ConferenceStatusCallbackEvent {sorted(unknown)}"
            )
        conference = ET.Element(
            "Conference",
            {
                "muted": str(_flag(form, "Muted", False)).lower(),
                "beep": beep,
                "startConferenceOnEnter": str(
                    _flag(form, "StartConferenceOnEnter", True)
                ).lower(),
                "endConferenceOnExit": str(
                    _flag(form, "EndConferenceOnExit", False)
                ).lower(),
                **({"coach": coach} if coaching and coach else {}),
                **_optional(form, "WaitUrl", "waitUrl"),
                **_optional(form, "Label", "participantLabel"),
                **_optional(form, "ConferenceStatusCallback", "statusCallback"),
                **_optional(
                    form, "ConferenceStatusCallbackMethod", "statusCallbackMethod"
                ),
            },
        )
        if room_events:
            conference.set("statusCallbackEvent", " ".join(sorted(room_events)))
        conference.text = room.friendly_name
        response = ET.Element("Response")
        ET.SubElement(response, "Dial").append(conference)
        document = ET.tostring(response, encoding="unicode")
        try:  # the interpreter's own checks (a bad URL, say)
            (dial,) = twiml.parse_twiml(document)
        except twiml.TwimlError as exc:
            raise RestError(
                400, 21200, f"Invalid participant settings: {exc}"
            ) from None
        leg_form = [
            (k, v)
            for k, v in form.pairs
            if k
            in (
                "To",
                "From",
                "StatusCallback",
                "StatusCallbackMethod",
                "StatusCallbackEvent",
                "Timeout",
                "TimeLimit",
            )
        ]
        call = self._create_call(
            Form(urlencode([*leg_form, ("Twiml", document)]).encode())
        )
        assert isinstance(dial, twiml.Dial)
        assert isinstance(dial.target, twiml.Conference)
        self._participant_legs[call.sid] = (room, dial.target)
        call._note(
            "participant-create",
            conference=room.friendly_name,
            conference_sid=room.sid,
            muted=dial.target.muted,
            coach=dial.target.coach,
        )
        return self._participant_resource(room, call.sid)

    def _participant_resource(self, room: ConferenceRoom, sid: str) -> dict[str, Any]:
        """The participant as the REST API serialises it."""
        present = room.participants.get(sid)
        if present is not None:
            settings, status = present.settings, "connected"
        else:
            settings = self._participant_legs[sid][1]
            call = self.calls[sid]
            status = _STATUS_OF_CALL.get(call.status, "complete")
            if call.status in ("busy", "failed", "no-answer", "canceled"):
                status = "failed"
        now = rfc2822(utc_now())
        return {
            "account_sid": room.account_sid,
            "call_sid": sid,
            "conference_sid": room.sid,
            "label": settings.participant_label,
            "call_sid_to_coach": settings.coach,
            "coaching": settings.coach is not None,
            "date_created": now,
            "date_updated": now,
            "end_conference_on_exit": settings.end_conference_on_exit,
            "muted": settings.muted,
            "hold": False,
            "start_conference_on_enter": settings.start_conference_on_enter,
            "status": status,
            "queue_time": None,
            "uri": f"/{API_VERSION}/Accounts/{room.account_sid}/Conferences/"
            f"{room.sid}/Participants/{sid}.json",
        }


def _optional(form: Form, name: str, attribute: str) -> dict[str, str]:
    value = form.get(name)
    return {attribute: value} if value else {}
