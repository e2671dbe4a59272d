"""Conference rooms and recordings of the Twilio emulator (no Django).

``ConferenceRules`` is the part of ``TwilioEmulator`` that keeps rooms: who
joins and leaves, when a room starts and ends, the conference status events
and their callbacks, and the recording callbacks of rooms and of calls
created with ``Record=true``. The rules are in ``ConferenceRoom``'s docstring
(``realtime.emulators.twilio_resources``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import httpx
import uvicorn

from realtime.emulators.caller_webhook import new_sid
from realtime.emulators.twilio_resources import (
    API_VERSION,
    Call,
    ConferenceEvent,
    ConferenceRoom,
    Participant,
    rfc2822,
    utc_now,
)
from realtime.emulators.twilio_rest import absolute_url

__all__ = ["DEFAULT_HOLD_MUSIC", "ConferenceRules"]

DEFAULT_HOLD_MUSIC: Final = (
    "https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical"
)
_SHORT_EVENT: Final = {
    "conference-start": "start",
    "conference-end": "end",
    "participant-join": "join",
    "participant-leave": "leave",
}


class ConferenceRules:
    """Rooms, their events and recordings; mixed into ``TwilioEmulator``."""

    if TYPE_CHECKING:  # provided by TwilioEmulator
        calls: dict[str, Call]
        conferences: dict[str, ConferenceRoom]
        _rooms: dict[tuple[str, str], ConferenceRoom]
        _server: uvicorn.Server | None

        @property
        def base_url(self) -> str: ...

        async def _request(
            self,
            kind: str,
            url: str,
            method: str,
            params: Mapping[str, str],
            call: Call | None,
            *,
            delivery: str = "normal",
            token: str | None = None,
        ) -> httpx.Response | None: ...

    def _room(self, account_sid: str, name: str) -> ConferenceRoom:
        room = self._rooms.get((account_sid, name))
        if room is None or room.status == "completed":
            room = ConferenceRoom(account_sid=account_sid, friendly_name=name)
            self._rooms[(account_sid, name)] = room
            self.conferences[room.sid] = room
        return room

    def _join(
        self, room: ConferenceRoom, participant: Participant, document_url: str | None
    ) -> None:
        """Add a participant; start the room if the rules say so (synchronous)."""
        call, settings = participant.call, participant.settings
        room.participants[call.sid] = participant
        room.joined.append(call.sid)
        if settings.status_callback:
            url = absolute_url(settings.status_callback, document_url)
            room._subscribers.setdefault(
                url, (settings.status_callback_method, settings.status_callback_events)
            )
        if (
            settings.record == "record-from-start"
            and settings.recording_status_callback
        ):
            url = absolute_url(settings.recording_status_callback, document_url)
            room._recorders.setdefault(
                url,
                (
                    settings.recording_status_callback_method,
                    settings.recording_status_callback_events,
                    call.sid,
                ),
            )
        if settings.record == "record-from-start" and room.recording_sid is None:
            room.recording_sid = new_sid("RE")
        call._note(
            "conference-join",
            conference=room.friendly_name,
            conference_sid=room.sid,
            start_conference_on_enter=settings.start_conference_on_enter,
            end_conference_on_exit=settings.end_conference_on_exit,
        )
        self._emit(room, "participant-join", participant)
        if room.started:
            return
        # Twilio starts a room once two people are in it and one of them may start it.
        if len(room.participants) >= 2 and any(
            p.settings.start_conference_on_enter for p in room.participants.values()
        ):
            room._started_at = time.monotonic()
            room.began.set()
            room.status = "in-progress"
            room.date_updated = utc_now()
            self._emit(room, "conference-start", None)
            if room.recording_sid is not None:
                room._recording_started = utc_now()
            for other in room.participants.values():
                other.call._note("hold-music-stop", conference=room.friendly_name)
        else:
            wait_url = settings.wait_url
            call._note(
                "hold-music",
                conference=room.friendly_name,
                wait_url=DEFAULT_HOLD_MUSIC if wait_url is None else wait_url,
            )

    def _leave(self, room: ConferenceRoom, participant: Participant) -> None:
        """Remove a participant; end the room if the rules say so (synchronous)."""
        sid = participant.call.sid
        del room.participants[sid]
        self._emit(room, "participant-leave", participant)
        if room.status == "completed":
            return
        if participant.settings.end_conference_on_exit:
            self._end_room(room, "participant-with-end-conference-on-exit-left", sid)
        elif not room.participants:
            self._end_room(room, "last-participant-left", sid)

    def _end_room(self, room: ConferenceRoom, reason: str, call_sid: str) -> None:
        room.status = "completed"
        room.reason_ended = reason
        room.call_sid_ending = call_sid
        room.date_updated = utc_now()
        for other in list(room.participants.values()):
            other.reason_left = "conference_ended"
            del room.participants[other.call.sid]
            self._emit(room, "participant-leave", other)
            other.kicked.set()
        self._emit(room, "conference-end", None)
        room.ended.set()

    def _emit(
        self, room: ConferenceRoom, name: str, participant: Participant | None
    ) -> None:
        """Record a conference event now; ``_flush`` posts it to subscribers."""
        room._sequence += 1
        params = {
            "AccountSid": room.account_sid,
            "ConferenceSid": room.sid,
            "FriendlyName": room.friendly_name,
            "StatusCallbackEvent": name,
            "SequenceNumber": str(room._sequence),
            "Timestamp": rfc2822(utc_now()) or "",
        }
        if participant is not None:
            settings = participant.settings
            params.update(
                CallSid=participant.call.sid,
                Muted=str(settings.muted).lower(),
                Hold="false",
                Coaching=str(settings.coach is not None).lower(),
                EndConferenceOnExit=str(settings.end_conference_on_exit).lower(),
                StartConferenceOnEnter=str(settings.start_conference_on_enter).lower(),
            )
            if settings.participant_label:
                params["ParticipantLabel"] = settings.participant_label
            if settings.coach is not None:
                params["CallSidToCoach"] = settings.coach
            if name == "participant-leave":
                params["ReasonParticipantLeft"] = participant.reason_left
                params["ParticipantCallStatus"] = participant.call.status
        if name == "conference-end":
            params["ReasonConferenceEnded"] = room.reason_ended or ""
            params["CallSidEndingConference"] = room.call_sid_ending or ""
        room.events.append(ConferenceEvent(name, params))

    async def _flush(self, room: ConferenceRoom) -> None:
        """Post every conference event not yet sent, in order, to its subscribers."""
        async with room._send_lock:
            while room._sent < len(room.events):
                event = room.events[room._sent]
                room._sent += 1
                short = _SHORT_EVENT[event.name]
                for url, (method, events) in list(room._subscribers.items()):
                    if short in events:
                        await self._request(
                            "conference",
                            url,
                            method,
                            event.params,
                            self._call_of(event),
                        )
                if event.name == "conference-start":
                    await self._recording_events(room, "in-progress")
                if event.name == "conference-end":
                    await self._recording_events(room, "completed")

    def _call_of(self, event: ConferenceEvent) -> Call | None:
        sid = event.params.get("CallSid")
        return None if sid is None else self.calls.get(sid)

    async def _recording_events(self, room: ConferenceRoom, status: str) -> None:
        if room.recording_sid is None or room._recording_started is None:
            return
        started = room._started_at or time.monotonic()
        duration = max(1, math.ceil(time.monotonic() - started))
        for url, (method, events, call_sid) in room._recorders.items():
            if status not in events:
                continue
            params = {
                "AccountSid": room.account_sid,
                "CallSid": call_sid,
                "ConferenceSid": room.sid,
                "RecordingSid": room.recording_sid,
                "RecordingUrl": self._recording_url(
                    room.account_sid, room.recording_sid
                ),
                "RecordingStatus": status,
                "RecordingChannels": "1",
                "RecordingSource": "Conference",
                "RecordingStartTime": rfc2822(room._recording_started) or "",
                "Timestamp": rfc2822(utc_now()) or "",
            }
            if status == "completed":
                params["RecordingDuration"] = str(duration)
            await self._request(
                "recording", url, method, params, self.calls.get(call_sid)
            )

    async def _call_recording(self, call: Call) -> None:
        """Post the recording callback of a call created with ``Record=true``."""
        url = call.options.recording_status_callback
        if url is None:
            return
        recording_sid = new_sid("RE")
        params = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "RecordingSid": recording_sid,
            "RecordingUrl": self._recording_url(call.account_sid, recording_sid),
            "RecordingStatus": "completed",
            "RecordingDuration": str(max(1, call.duration or 0)),
            "RecordingChannels": "1",
            "RecordingSource": "OutboundAPI",
            "RecordingStartTime": rfc2822(call.start_time) or "",
        }
        await self._request(
            "recording",
            url,
            call.options.recording_status_callback_method,
            params,
            call,
        )

    def _recording_url(self, account_sid: str, recording_sid: str) -> str:
        base = self.base_url if self._server is not None else "https://api.twilio.com"
        return f"{base}/{API_VERSION}/Accounts/{account_sid}/Recordings/{recording_sid}"
