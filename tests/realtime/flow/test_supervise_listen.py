"""Supervisors listen to a live phone call (F-75): both sides, silent to the caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from callcenter.errors import ApplicationError
from calls.models import CallEvent, CallSession
from calls.supervise_listen import asupervise_listen_offer
from realtime.emulators.caller import HangUp, Pause, Speak, WaitForAudio, WaitUntilQuiet
from tests.agents.factories import OperatorFactory
from tests.realtime.flow.conftest import CALLER_NUMBER, INBOUND_NUMBER, wait_until
from tests.realtime.supervisor_client import SupervisorTestClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture
def listen_settings(flow_settings):
    flow_settings.WEBRTC_HOST_ADDRESSES = ["127.0.0.1"]
    flow_settings.WEBRTC_ICE_SERVERS = []
    return flow_settings


def signal_as(call: CallSession, user: Any):
    async def signal(sdp: str) -> dict[str, Any]:
        return await asupervise_listen_offer(call=call, user=user, sdp=sdp)

    return signal


async def offer_when_live(call: CallSession, user: Any, client: SupervisorTestClient):
    """Offer as soon as the bridge holds the stream (409 until then)."""
    for _ in range(100):
        try:
            return await client.connect(signal_as(call, user))
        except ApplicationError as exc:
            if exc.http_status != 409:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("the call never became supervisable")


async def events_of(call: CallSession, kind: str) -> list[dict[str, Any]]:
    return [
        e.payload
        async for e in CallEvent.objects.filter(call=call, type=kind).order_by("pk")
    ]


async def test_two_supervisors_hear_the_caller_and_the_ai_and_the_call_goes_on(
    service, start_fake_realtime, twilio, inbound_agent, listen_settings
):
    supervisor = await sync_to_async(OperatorFactory)(
        organization=inbound_agent.organization, is_superuser=True
    )
    script = [
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=1000, timeout_s=15),
        Pause(ms=12000),  # 3 s: the supervisors join
        Speak(ms=6000),
        Pause(ms=900),
        WaitForAudio(ms=100, timeout_s=10),
        WaitUntilQuiet(quiet_ms=1000, timeout_s=15),
        Pause(ms=2000),
        HangUp(),
    ]
    first, second = SupervisorTestClient(), SupervisorTestClient()
    async with start_fake_realtime() as fake:
        handle = await twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{service}/api/twilio/voice/incoming",
            caller_script=script,
            status_callback=f"{service}/api/twilio/status",
        )
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        caller = await handle.wait_stream(timeout=10)
        try:
            one = await offer_when_live(call, supervisor, first)
            two = await offer_when_live(call, supervisor, second)
            assert one != two
            await handle.wait_finished(timeout=60)
        finally:
            await first.close()
            await second.close()
        fake.assert_complete()
    caller.assert_clean()
    assert caller.heard_ms > 500  # the call itself went on as usual
    for client in (first, second):
        assert client.loud[0] > 10, client.loud  # the caller's speech, left track
        assert client.loud[1] > 10, client.loud  # the AI's answer, right track
    assert await wait_until(
        lambda: _count(call, "supervise-listen-stop", 2), within_s=10
    )
    starts = await events_of(call, "supervise-listen-start")
    assert {s["listener"] for s in starts} == {one, two}
    assert all(s["by_id"] == supervisor.pk for s in starts)
    controls = await events_of(call, "control")
    assert not any("sdp" in c for c in controls)  # the SDP is not an event
    media = (await events_of(call, "supervise-media"))[0]
    assert media["listeners"] == 2 and media["listen_p99_ms"] is not None


async def _count(call: CallSession, kind: str, count: int) -> bool:
    return len(await events_of(call, kind)) >= count


async def test_the_mic_reaches_the_bridge_and_a_silent_listener_is_dropped(
    service, start_fake_realtime, twilio, inbound_agent, listen_settings, monkeypatch
):
    """Microphone packets reach ``on_supervisor_audio`` as 960-byte frames; a page
    that stops pinging is dropped after 3 s: listen-stop, ``on_supervisor_lost``."""
    from realtime.bridge import CallBridge

    heard: list[tuple[str, int]] = []
    lost: list[str] = []

    async def on_audio(self: Any, listener_id: str, pcm24: bytes) -> None:
        heard.append((listener_id, len(pcm24)))

    async def on_lost(self: Any, listener_id: str) -> None:
        lost.append(listener_id)

    monkeypatch.setattr(CallBridge, "on_supervisor_audio", on_audio)
    monkeypatch.setattr(CallBridge, "on_supervisor_lost", on_lost)
    supervisor = await sync_to_async(OperatorFactory)(
        organization=inbound_agent.organization, is_superuser=True
    )
    script = [WaitForAudio(ms=100, timeout_s=10), Pause(ms=60000), HangUp()]
    client = SupervisorTestClient(mic_amplitude=8000)
    async with start_fake_realtime():
        handle = await twilio.inbound_call(
            from_=CALLER_NUMBER,
            to=INBOUND_NUMBER,
            voice_url=f"{service}/api/twilio/voice/incoming",
            caller_script=script,
            status_callback=f"{service}/api/twilio/status",
        )
        call = await CallSession.objects.aget(twilio_call_sid=handle.sid)
        await handle.wait_stream(timeout=10)
        try:
            listener = await offer_when_live(call, supervisor, client)

            async def mic_heard() -> bool:
                return len(heard) >= 25

            assert await wait_until(mic_heard, within_s=10), heard
            assert {h[0] for h in heard} == {listener}
            assert {h[1] for h in heard} == {960}
            with pytest.raises(ApplicationError) as refused:
                await asupervise_listen_offer(
                    call=call, user=supervisor, sdp="v=0\r\nnot an offer\r\n"
                )
            assert refused.value.http_status == 400
            client.stop_pinging()

            async def dropped() -> bool:
                return await _count(call, "supervise-listen-stop", 1)

            assert await wait_until(dropped, within_s=8)
            assert lost == [listener]
            stop = (await events_of(call, "supervise-listen-stop"))[0]
            assert stop["listener"] == listener and stop["seconds"] > 0
            await call.arefresh_from_db()
            assert call.is_live  # the call goes on without its listener
        finally:
            await client.close()
            await handle.hang_up()
            await handle.wait_finished(timeout=20)


async def test_a_supervisor_hears_both_sides_of_a_web_call(
    service, start_fake_realtime, inbound_agent, listen_settings, tmp_path
):
    """The browser's call (PCM16 24 kHz, marks from the page's playback): the
    supervisor hears the AI's greeting and the caller's voice."""
    from tests.realtime.flow.test_web_call import logged_in_http, offer_to
    from tests.realtime.transport.webrtc_client import WebRtcTestClient, eventually

    listen_settings.MEDIA_ROOT = str(tmp_path / "media")
    supervisor = await sync_to_async(OperatorFactory)(
        organization=inbound_agent.organization, is_superuser=True
    )
    listener = SupervisorTestClient()
    async with start_fake_realtime():
        http = await logged_in_http(service, inbound_agent)
        caller = WebRtcTestClient(amplitude=0)
        signal = offer_to(http, f"/agents/{inbound_agent.pk}/try/offer/")
        await caller.connect(signal)
        call = await CallSession.objects.aget(pk=signal.reply["call_id"])
        try:
            await offer_when_live(call, supervisor, listener)
            await eventually(lambda: listener.loud[1] > 10, what="the AI heard")
            assert listener.loud[0] == 0  # the caller has said nothing yet
            caller.mic.amplitude = 9000
            await eventually(lambda: listener.loud[0] > 10, what="the caller heard")
            caller.send({"type": "hangup"})

            async def stopped() -> bool:
                return await _count(call, "supervise-listen-stop", 1)

            assert await wait_until(stopped, within_s=10)
        finally:
            await listener.close()
            await caller.close()
            await http.aclose()
