"""A web call's runtime: the WebRTC transport, the bridge and the call's groups.

`web_call_answer` is what the offer view awaits: it builds the call's frozen
`BridgeConfig` (PCM16 24 kHz), opens a peer connection (`realtime/transport/`),
starts the same `CallBridge` a phone call uses, and returns the SDP answer. The
session then lives on the server's event loop until the call ends:

- one channel-layer channel joins `call.<id>` (control: hang-up, instruct, the
  AI-takes-a-message handoff, from any process) and `monitor.call.<id>`
  (transcript lines, partials, status), which is forwarded to the page's data
  channel, so the page shows exactly what the operators' monitor shows;
- when the bridge finishes, the media closes, the stereo recording is saved as
  the call's `bridge` recording (F-28) and the media figures as a call event.

A peer that never connects is given up after `CONNECT_TIMEOUT_S`. A web call
cannot move to another process (its media lives here): when the process drains
(F-69), new offers are refused and each live web call gets until the drain's
deadline to end by itself; then the AI says goodbye and hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import tempfile
from pathlib import Path
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.files import File

from callcenter import draining
from callcenter.errors import ApplicationError, ErrorCode
from callcenter.logging import bind_call_id
from calls.groups import call_control_group, call_monitor_group
from calls.live import live_calls_decrement, live_calls_increment
from calls.models import CallSession, Recording
from calls.services import acall_session_end
from realtime.bridge import CallBridge
from realtime.call_setup import abridge_config_build
from realtime.store import DjangoCallStore
from realtime.transport.aiortc_tuning import host_addresses_choose
from realtime.transport.webrtc import WebRtcCall
from realtime.transport.webrtc_audio import StereoRecorder

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0
# What of the monitor group's traffic the page gets, renamed for the page's script.
PAGE_EVENTS = {
    "transcript.update": "transcript",
    "transcript.partial": "partial",
    "call.status": "status",
}
ERROR_EVENTS = {"error", "model-failed", "response-failed"}
DRAIN_GOODBYE = (
    "申し訳ございません。システムの再起動のため、この通話を終了いたします。"
    "お手数ですが、もう一度おかけ直しください。"
)

_sessions: set[WebCallSession] = set()  # keeps each live session (and its tasks) alive


@database_sync_to_async
def _recording_save(call: CallSession, path: Path, duration_s: float) -> None:
    with path.open("rb") as handle:
        recording = Recording(
            call=call,
            source=Recording.Source.BRIDGE,
            duration_s=round(duration_s),
            status=Recording.Status.COMPLETED,
        )
        recording.file.save(f"call-{call.pk}-bridge.wav", File(handle), save=True)


class WebCallStore(DjangoCallStore):
    """The phone call's store, telling the page about errors as they are recorded."""

    def __init__(self, call: CallSession, rtc: WebRtcCall) -> None:
        super().__init__(call)
        self._rtc = rtc

    async def record_event(
        self, type: str, payload: dict[str, Any] | None = None
    ) -> None:
        if type in ERROR_EVENTS:
            detail = (payload or {}).get("message") or (payload or {}).get("detail")
            self._rtc.send_event({"type": "error", "kind": type, "detail": detail})
        await super().record_event(type, payload)

    async def move_caller_to_handoff(self) -> None:
        """Never needed: a web call's handoff keeps the AI (it takes a message)."""


class WebCallSession:
    """One browser call on this server: transport, bridge, groups, recording."""

    def __init__(self, call: CallSession, rtc: WebRtcCall, bridge: CallBridge) -> None:
        self.call = call
        self.rtc = rtc
        self.bridge = bridge
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: str | None = None

    async def start(self) -> None:
        """Run the call: the bridge (the model opens now), its groups, its end."""
        live_calls_increment()
        _sessions.add(self)
        draining.register(self)
        await self.bridge.start()
        self._spawn(self._listen(), "web-call-groups")
        self._spawn(self._watch_connect(), "web-call-connect")
        self._spawn(self._wait_end(), "web-call-end")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = self._channel = await layer.new_channel()
        groups = (call_control_group(self.call.pk), call_monitor_group(self.call.pk))
        for group in groups:
            await layer.group_add(group, channel)
        try:
            while True:
                message = await layer.receive(channel)
                kind = message.get("type")
                if kind == "call.control":
                    data = {
                        k: v for k, v in message.items() if k not in ("type", "command")
                    }
                    with bind_call_id(self.call.pk):
                        await self.bridge.on_control(str(message.get("command")), data)
                elif kind in PAGE_EVENTS:
                    self.rtc.send_event({**message, "type": PAGE_EVENTS[kind]})
        finally:
            for group in groups:
                with contextlib.suppress(Exception):
                    await layer.group_discard(group, channel)

    async def _watch_connect(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not self.bridge.state.stream_sid and not self.rtc.closed:
            log.warning("web call: the browser never connected")
            await self.bridge.finish("web-connect-timeout", failed=True)

    async def drain(self, within_s: float) -> bool:
        """Let the call end by itself within ``within_s``, else say goodbye and end.

        True when it ended by itself (see `callcenter.draining`).
        """
        finished = asyncio.ensure_future(self.bridge.wait_finished())
        done, _ = await asyncio.wait({finished}, timeout=max(within_s, 0.0))
        if done:
            return True
        await self.bridge.store.record_event("drain", {"web": True, "quiet": False})
        with bind_call_id(self.call.pk):
            await self.bridge.on_control("goodbye", {"text": DRAIN_GOODBYE})
        await asyncio.wait({finished}, timeout=draining.HAND_OVER_GRACE_S - 2)
        if not finished.done():
            finished.cancel()
            await self.bridge.finish("drain-timeout")
        return False

    async def _wait_end(self) -> None:
        try:
            await self.bridge.wait_finished()
        finally:
            with bind_call_id(self.call.pk):
                await self._cleanup()

    async def _cleanup(self) -> None:
        await self.rtc.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        recorder = self.rtc.recorder
        try:
            if recorder is not None and recorder.frames:
                await _recording_save(self.call, recorder.path, recorder.duration_s)
            await self.bridge.store.record_event("webrtc-media", self.rtc.figures())
        except Exception:
            log.exception("web call: saving the recording or figures failed")
        finally:
            if recorder is not None:
                with contextlib.suppress(OSError):
                    recorder.path.unlink()
                    recorder.path.parent.rmdir()
            # A browser that never connected leaves the call unclaimed: close it.
            await acall_session_end(
                call=self.call, reason="web-call-not-connected", failed=True
            )
            live_calls_decrement()
            draining.unregister(self)
            _sessions.discard(self)


async def web_call_answer(*, call: CallSession, offer_sdp: str) -> dict[str, Any]:
    """Answer the browser's offer for ``call`` and start its bridge; the answer.

    The call outlives the request that answers it. Django runs an async view in a
    context whose thread-sensitive executor quits with the request, and every task
    aiortc and the bridge start would inherit it; so the call starts in a fresh
    context, like a Channels consumer's, from a task of its own.
    """
    task = asyncio.create_task(
        _answer(call=call, offer_sdp=offer_sdp),
        name=f"web-call-{call.pk}",
        context=contextvars.Context(),
    )
    return await task


async def _answer(*, call: CallSession, offer_sdp: str) -> dict[str, Any]:
    with bind_call_id(call.pk):
        config = await abridge_config_build(call=call)
        host_addresses_choose(settings.WEBRTC_HOST_ADDRESSES)
        folder = Path(tempfile.mkdtemp(prefix="web-call-"))
        recorder = StereoRecorder(folder / f"call-{call.pk}.wav")
        rtc = WebRtcCall(
            call_ref=str(call.pk),
            stream_token=call.stream_token,
            ice_servers=settings.WEBRTC_ICE_SERVERS,
            recorder=recorder,
        )

        async def close_media(code: int) -> None:
            await rtc.close(code)

        async def no_twilio(frame: str) -> None:
            raise RuntimeError("a web call has no Twilio stream")

        bridge = CallBridge(
            config,
            store=WebCallStore(call, rtc),
            send_to_twilio=no_twilio,
            close_twilio=close_media,
            # The offer was authenticated (session or signed token): the model may
            # open before the browser's stream spends the token.
            signature_verified=True,
            send_to_caller=rtc.send_to_caller,
        )
        rtc.bind(bridge)
        session = WebCallSession(call, rtc, bridge)
        try:
            answer = await rtc.answer(offer_sdp)
        except Exception as exc:
            log.warning("web call: the offer cannot be answered: %s", exc)
            await rtc.close()
            await acall_session_end(call=call, reason="web-offer-refused", failed=True)
            raise ApplicationError(
                "The offer could not be answered (is it a WebRTC audio offer?).",
                code=ErrorCode.VALIDATION,
                http_status=400,
            ) from None
        await session.start()
        return {"type": "answer", "sdp": answer, "call_id": call.pk}


__all__ = ["WebCallSession", "WebCallStore", "web_call_answer"]
