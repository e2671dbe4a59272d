"""The TwiML interpreter of the Twilio emulator (no Django).

``TwimlInterpreter`` is the part of ``TwilioEmulator`` that runs a call's
TwiML: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Redirect>``, ``<Hangup>``,
``<Gather input="speech">`` (``twiml_gather``: a scripted caller's speech),
``<Connect><Stream>`` (a ``SimulatedCaller`` against our bridge, built by the
emulator's ``caller_factory`` from a ``StreamStart``), ``<Dial><Number>``
(a child leg to a scripted far end) and ``<Dial><Conference>`` (the rooms of
``ConferenceRules``), with each verb's ``action`` and REST redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from realtime.emulators import twiml
from realtime.emulators.caller import SimulatedCaller, Step
from realtime.emulators.caller_webhook import new_sid
from realtime.emulators.twilio_conferences import ConferenceRules
from realtime.emulators.twilio_far_ends import FarEnd, Timings
from realtime.emulators.twilio_resources import (
    Call,
    CallError,
    CallOptions,
    Participant,
    rfc2822,
    utc_now,
)
from realtime.emulators.twilio_rest import absolute_url
from realtime.emulators.twiml import TwimlError
from realtime.emulators.twiml_gather import CALLER_GONE, GatherRules, say_voice_error

ABNORMAL_CLOSURE: Final = 1006  # no close frame: the connection broke

__all__ = ["CallerFactory", "StreamStart", "TwimlInterpreter", "default_caller"]


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Everything needed to open one Media Stream as Twilio would."""

    url: str  # absolute ws:// or wss:// URL, no query string
    auth_token: str  # signs the upgrade (X-Twilio-Signature)
    account_sid: str
    call_sid: str
    stream_sid: str
    parameters: Mapping[str, str]  # <Parameter>s → start.customParameters
    name: str | None


def default_caller(start: StreamStart) -> SimulatedCaller:
    """Build the simulated caller of a Media Stream (real-time pace)."""
    return SimulatedCaller(
        start.url,
        parameters=start.parameters,
        auth_token=start.auth_token,
        account_sid=start.account_sid,
        call_sid=start.call_sid,
        stream_sid=start.stream_sid,
    )


CallerFactory = Callable[[StreamStart], SimulatedCaller]


class _Hangup:
    pass


class _Failed:
    pass


class _CallerGone:
    pass


@dataclass(frozen=True, slots=True)
class _Document:
    verbs: tuple[twiml.Verb, ...]
    url: str | None


_HANGUP: Final = _Hangup()
_FAILED: Final = _Failed()
_CALLER_GONE: Final = _CallerGone()
_Outcome = _Document | _Hangup | _Failed | _CallerGone | None


class TwimlInterpreter(GatherRules, ConferenceRules):
    """Runs TwiML for calls; mixed into ``TwilioEmulator``."""

    if TYPE_CHECKING:  # provided by TwilioEmulator
        timings: Timings
        auth_token: str
        caller_factory: CallerFactory

        def far_end_for(self, number: str) -> FarEnd: ...

        def _talk_time(self, far_end: FarEnd) -> float | None: ...

        def _spawn(
            self, call: Call | None, coro: Coroutine[Any, Any, Any]
        ) -> asyncio.Task[Any]: ...

        async def _sleep(self, seconds: float) -> None: ...

        async def _set_status(self, call: Call, status: str) -> None: ...

        async def _end_call(self, call: Call, status: str) -> None: ...

        async def _fail(self, call: Call, code: int, message: str) -> None: ...

        async def _fetch_twiml(
            self,
            call: Call,
            kind: str,
            url: str,
            method: str,
            extra: Mapping[str, str] | None = None,
        ) -> tuple[twiml.Verb, ...] | None: ...

    # TwiML interpreter ----------------------------------------------------------

    def _start_interpreter(
        self, call: Call, document: tuple[twiml.Verb, ...], document_url: str | None
    ) -> None:
        if call._ending:
            return
        call._interpreter = self._spawn(
            call, self._interpret(call, document, document_url)
        )

    async def _redirect(
        self, call: Call, url: str | None, method: str, document: str | None
    ) -> None:
        """Replace the TwiML a live call runs (REST update with Url or Twiml)."""
        async with call._redirect_lock:
            if call._ending:
                return
            if url is not None:
                verbs = await self._fetch_twiml(call, "redirect", url, method)
                if verbs is None:
                    await self._end_call(call, "completed")
                    return
            else:
                assert document is not None
                try:
                    verbs = twiml.parse_twiml(document)
                except TwimlError as exc:
                    await self._fail(call, exc.code, exc.reason)
                    return
            old = call._interpreter
            if old is not None and not old.done():
                old.cancel()
                await asyncio.wait({old})
            self._start_interpreter(call, verbs, url)

    async def _interpret(
        self, call: Call, verbs: tuple[twiml.Verb, ...], document_url: str | None
    ) -> None:
        while True:
            outcome: _Outcome = None
            for verb in verbs:
                call._note("verb", verb=type(verb).__name__)
                try:
                    outcome = await self._run_verb(call, verb, document_url)
                except TwimlError as exc:
                    await self._fail(call, exc.code, exc.reason)
                    return
                if outcome is not None:
                    break
            if isinstance(outcome, _Document):
                verbs, document_url = outcome.verbs, outcome.url
                continue
            if isinstance(outcome, _Failed | _CallerGone):
                await self._end_call(call, "completed")
                return
            call._note("hangup", by="twiml" if outcome is _HANGUP else "end of twiml")
            await self._end_call(call, "completed")
            return

    async def _run_verb(
        self, call: Call, verb: twiml.Verb, document_url: str | None
    ) -> _Outcome:
        t = self.timings
        if isinstance(verb, twiml.Say):
            problem = say_voice_error(verb.voice, verb.language)
            if problem is not None:  # Twilio skips the <Say>: the caller hears nothing
                call.errors.append(CallError(13511, problem))
                call._note("error", code=13511, message=problem)
                return None
            call._note("say", text=verb.text, voice=verb.voice, language=verb.language)
            await self._repeat(verb.loop, len(verb.text) * t.say_s_per_char)
        elif isinstance(verb, twiml.Play):
            call._note("play", url=verb.url, digits=verb.digits)
            await self._repeat(verb.loop, t.play_s if verb.url else 0.0)
        elif isinstance(verb, twiml.Pause):
            call._note("pause", length=verb.length)
            await self._sleep(verb.length * t.pause_scale)
        elif isinstance(verb, twiml.Hangup):
            return _HANGUP
        elif isinstance(verb, twiml.Redirect):
            url = absolute_url(verb.url, document_url)
            fetched = await self._fetch_twiml(call, "redirect", url, verb.method)
            return _FAILED if fetched is None else _Document(fetched, url)
        elif isinstance(verb, twiml.Connect):
            return await self._connect_stream(call, verb, document_url)
        elif isinstance(verb, twiml.Gather):
            outcome = await self._gather(call, verb, document_url)
            return _CALLER_GONE if outcome is CALLER_GONE else outcome
        elif isinstance(verb, twiml.Dial):
            call._script_rest = None  # a detour: later streams are driven by hand
            return await self._dial(call, verb, document_url)
        else:
            call._note("unsupported", verb=verb.name)
        return None

    async def _repeat(self, loop: int, seconds: float) -> None:
        if loop == 0:  # repeats until something else happens to the call
            await asyncio.Event().wait()
        await self._sleep(loop * seconds)

    async def _action(
        self,
        call: Call,
        url: str | None,
        method: str,
        document_url: str | None,
        extra: Mapping[str, str],
    ) -> _Outcome:
        """Request a verb's ``action``: its TwiML replaces the rest of the document."""
        if url is None:
            return None
        absolute = absolute_url(url, document_url)
        fetched = await self._fetch_twiml(call, "action", absolute, method, extra)
        return _FAILED if fetched is None else _Document(fetched, absolute)

    async def _connect_stream(
        self, call: Call, verb: twiml.Connect, document_url: str | None
    ) -> _Outcome:
        url = twiml.check_stream(verb.stream, document_url=document_url)
        stream_sid = new_sid("MZ")
        start = StreamStart(
            url=url,
            auth_token=self.auth_token,
            account_sid=call.account_sid,
            call_sid=call.sid,
            stream_sid=stream_sid,
            parameters=dict(verb.stream.parameters),
            name=verb.stream.name,
        )
        caller = self.caller_factory(start)
        try:
            await caller.connect()
        except Exception as exc:  # refused, or a non-101 answer: 31920
            await self._stream_event(
                call, verb.stream, stream_sid, "stream-error", str(exc)
            )
            raise TwimlError(
                f"Stream - WebSocket - Handshake Error: {exc}",
                code=twiml.TwimlErrorCode.STREAM_HANDSHAKE,
            ) from None
        call.streams.append(caller)
        call._note(
            "stream-start", url=url, stream_sid=stream_sid, parameters=start.parameters
        )
        call.stream_started.set()
        async with call.streams_changed:
            call.streams_changed.notify_all()
        await self._stream_event(call, verb.stream, stream_sid, "stream-started")
        if call.caller_script is not None and len(call.streams) == 1:
            call._script_rest = list(call.caller_script)
        if call._script_rest:
            # The script plays on the first stream, and goes on where it was on a
            # stream that resumes a broken one; other streams (back from a
            # conference, say) are driven through ``handle.caller``.
            self._spawn(call, self._run_script(call, caller, call._script_rest))
        try:
            while not caller.closed:
                with contextlib.suppress(AssertionError):  # its wait times out
                    await caller.wait_closed(timeout_s=3600.0)
        except asyncio.CancelledError:
            # Hung up, or redirected by a REST update: Twilio sends stop and closes.
            call._note("stream-stop", stream_sid=stream_sid)
            with contextlib.suppress(Exception):
                await caller.hang_up()
            await self._stream_event(call, verb.stream, stream_sid, "stream-stopped")
            raise
        await self._stream_event(call, verb.stream, stream_sid, "stream-stopped")
        if caller.closed_by_server is None:  # the script hung up
            call._note("stream-end", stream_sid=stream_sid, by="caller")
            call._note("hangup", by="caller")
            return _CALLER_GONE
        # The bridge closed the socket, or it broke (our process killed: no close
        # frame, a reset): Twilio goes on with <Connect action> or the next verb.
        code, reason = caller.closed_by_server
        by = "broken" if code is None or code == ABNORMAL_CLOSURE else "server"
        call._note(
            "stream-end",
            stream_sid=stream_sid,
            by=by,
            code=None if code is None else int(code),
            reason=reason,
        )
        return await self._action(call, verb.action, verb.method, document_url, {})

    async def _run_script(
        self, call: Call, caller: SimulatedCaller, rest: list[Step]
    ) -> None:
        """Play the caller's script (consuming ``rest``); it stays on the line
        afterwards. A step the stream ended under stays in ``rest``, to be played
        again on a resumed stream."""
        try:
            while rest and call._script_rest is rest:
                await caller.run(rest[:1], hang_up=False)
                if caller.closed and caller.closed_by_server is not None:
                    return  # the stream ended under this step
                if rest:
                    rest.pop(0)
        except AssertionError as exc:  # a wait in the script timed out
            call._note("caller-script-error", error=str(exc))

    async def _stream_event(
        self,
        call: Call,
        stream: twiml.Stream,
        stream_sid: str,
        event: str,
        error: str | None = None,
    ) -> None:
        if stream.status_callback is None:
            return
        params = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "StreamSid": stream_sid,
            "StreamName": stream.name or stream_sid,
            "StreamEvent": event,
            "Timestamp": rfc2822(utc_now()) or "",
        }
        if error is not None:
            params["StreamError"] = error
        await self._request(
            "stream",
            stream.status_callback,
            stream.status_callback_method,
            params,
            call,
        )

    # <Dial> ---------------------------------------------------------------------

    async def _dial(
        self, call: Call, verb: twiml.Dial, document_url: str | None
    ) -> _Outcome:
        if isinstance(verb.target, twiml.Conference):
            return await self._dial_conference(call, verb, verb.target, document_url)
        return await self._dial_number(call, verb, verb.target, document_url)

    async def _dial_number(
        self,
        call: Call,
        verb: twiml.Dial,
        target: twiml.Number,
        document_url: str | None,
    ) -> _Outcome:
        far_end = self.far_end_for(target.number)
        child = Call(
            account_sid=call.account_sid,
            to=target.number,
            from_=verb.caller_id or call.from_,
            direction="outbound-dial",
            options=CallOptions(timeout=verb.timeout),
            status="ringing",
            parent_call_sid=call.sid,
            far_end=far_end,
        )
        child.start_time = utc_now()
        self.calls[child.sid] = child
        call._note("dial", number=target.number, child_sid=child.sid)
        started = time.monotonic()
        if far_end.behaviour in ("busy", "failed", "no-answer"):
            wait = self.timings.no_answer_s if far_end.behaviour == "no-answer" else 0.0
            await self._sleep(verb.timeout if wait is None else wait)
            await self._end_call(child, far_end.behaviour)
            dial_status: str = far_end.behaviour
        else:
            await self._sleep(
                self.timings.ring_s if far_end.ring_s is None else far_end.ring_s
            )
            child._answered_at = time.monotonic()
            child.times.answered = time.time()
            await self._set_status(child, "in-progress")
            child.talk_s = self._talk_time(far_end)
            limit = min(verb.time_limit, child.talk_s or verb.time_limit)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.finished.wait(), limit)
            finally:
                await self._end_call(child, "completed")
            dial_status = "completed"
        extra = {
            "DialCallStatus": dial_status,
            "DialCallSid": child.sid,
            "DialCallDuration": str(int(time.monotonic() - started)),
            "DialBridged": "true" if dial_status == "completed" else "false",
        }
        call._note("dial-end", dial_call_status=dial_status)
        return await self._action(call, verb.action, verb.method, document_url, extra)

    async def _dial_conference(
        self,
        call: Call,
        verb: twiml.Dial,
        settings: twiml.Conference,
        document_url: str | None,
    ) -> _Outcome:
        room = self._room(call.account_sid, settings.name)
        if len(room.participants) >= settings.max_participants:
            call._note("conference-full", conference=settings.name)
            extra = {"DialCallStatus": "failed"}
            return await self._action(
                call, verb.action, verb.method, document_url, extra
            )
        participant = Participant(call, settings, time.monotonic())
        self._join(room, participant, document_url)
        try:
            await self._flush(room)
            await participant.kicked.wait()
        finally:
            if room.participants.get(call.sid) is participant:
                participant.reason_left = (
                    "participant_updated_via_api"
                    if not call._ending
                    else "participant_hung_up"
                )
                self._leave(room, participant)
            call._note(
                "conference-left",
                conference=room.friendly_name,
                reason=participant.reason_left,
            )
            await self._flush(room)
        extra = {"DialCallStatus": "answered"}
        return await self._action(call, verb.action, verb.method, document_url, extra)
