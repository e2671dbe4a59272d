"""A web call end to end: the try page's offer, WebRTC on loopback, the same bridge.

The service runs on uvicorn in this loop, the fake Realtime server answers, and an
aiortc client stands in for the browser (tests/ui/ drives Chromium itself).
"""

from __future__ import annotations

import asyncio
import base64
import wave
from array import array
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from calls.models import CallEvent, CallSession, Recording, TranscriptEntry
from calls.status import CallStatus
from realtime.emulators import scenarios
from tests.agents.factories import CustomerFactory, OperatorFactory
from tests.realtime.flow.conftest import wait_until
from tests.realtime.transport.webrtc_client import WebRtcTestClient, eventually, rms

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


@pytest.fixture
def web_settings(flow_settings, tmp_path):
    flow_settings.WEBRTC_HOST_ADDRESSES = ["127.0.0.1"]
    flow_settings.WEBRTC_ICE_SERVERS = []
    flow_settings.MEDIA_ROOT = str(tmp_path / "media")
    return flow_settings


async def logged_in_http(service: str, agent: Any) -> httpx.AsyncClient:
    """An httpx client with an operator's session and the CSRF cookie."""

    def session_cookie() -> str:
        operator = OperatorFactory(organization=agent.organization)
        client = Client()
        client.force_login(operator)
        return client.cookies["sessionid"].value

    http = httpx.AsyncClient(base_url=service, timeout=20)
    http.cookies.set("sessionid", await sync_to_async(session_cookie)())
    page = await http.get(f"/agents/{agent.pk}/try/")
    assert page.status_code == 200
    return http


def offer_to(http: httpx.AsyncClient, url: str, **extra: Any):
    async def signal(sdp: str) -> str:
        reply = await http.post(
            url,
            json={"type": "offer", "sdp": sdp, **extra},
            headers={"X-CSRFToken": http.cookies["csrftoken"]},
        )
        assert reply.status_code == 200, reply.text
        signal.reply = reply.json()  # type: ignore[attr-defined]
        return str(reply.json()["sdp"])

    return signal


def appended_pcm(connection: Any) -> bytes:
    return b"".join(
        base64.b64decode(event["audio"])
        for event in connection.received_of("input_audio_buffer.append")
    )


async def test_try_call_talks_records_and_hangs_up(
    service, start_fake_realtime, inbound_agent, web_settings
):
    """The try page's call: the model session is audio/pcm 24 kHz; the greeting
    plays in the page; the caller's speech reaches the model with energy and
    interrupts the greeting, truncated within 60 ms of what the page played; lines
    are saved and reach the page; the page's hang-up ends the call and the model
    socket; the bridge recording is a stereo WAV with both sides."""
    customer = await sync_to_async(CustomerFactory)(
        organization=inbound_agent.organization, name="山田"
    )
    async with start_fake_realtime(scenarios.DEMO) as fake:
        http = await logged_in_http(service, inbound_agent)
        client = WebRtcTestClient(amplitude=0)
        signal = offer_to(
            http, f"/agents/{inbound_agent.pk}/try/offer/", customer_id=customer.pk
        )
        await client.connect(signal)
        call_id = signal.reply["call_id"]
        assert signal.reply["monitor_url"] == f"/calls/{call_id}/"
        await fake.wait_for_connection()
        model = fake.connections[0]
        await eventually(
            lambda: (
                model.session is not None
                and model.session["audio"]["input"]["format"]["type"] == "audio/pcm"
            ),
            what="an audio/pcm session",
        )
        assert model.session["audio"]["output"]["format"]["rate"] == 24000
        await eventually(lambda: client.loud_frames > 40, what="the greeting plays")
        assert rms(appended_pcm(model)) < 100  # a silent microphone so far

        client.mic.amplitude = 9000  # the caller speaks over the greeting
        await eventually(
            lambda: model.received_of("conversation.item.truncate"),
            what="the barge-in's truncate",
        )
        # The truncate may reach the model before the clear reaches the page.
        await eventually(
            lambda: any(kind == "clear" for _, kind in client.event_times),
            what="the clear on the page",
        )
        cleared_at = next(at for at, kind in client.event_times if kind == "clear")
        audio_end_ms = model.received_of("conversation.item.truncate")[0][
            "audio_end_ms"
        ]
        played_ms = client.played_ms_before(cleared_at)
        assert abs(audio_end_ms - played_ms) <= 60
        await eventually(lambda: rms(appended_pcm(model)[-48_000:]) > 1000)
        await eventually(
            lambda: any(e["type"] == "transcript" for e in client.events),
            within_s=20,
            what="a transcript line on the page",
        )
        call = await CallSession.objects.aget(pk=call_id)
        assert call.direction == "web" and call.status == CallStatus.AI_RESPONDING
        assert call.from_number == str(customer.phone_number)
        assert await TranscriptEntry.objects.filter(call_id=call_id).aexists()
        await asyncio.sleep(1.0)  # a second more of the caller, for the recording

        client.send({"type": "hangup"})

        async def ended() -> bool:
            call = await CallSession.objects.aget(pk=call_id)
            return (
                call.status == CallStatus.COMPLETED
                and await Recording.objects.filter(call_id=call_id).aexists()
            )

        assert await wait_until(ended)
        await model.wait_closed(timeout_s=5)
        await client.close()
        await http.aclose()

    recording = await Recording.objects.aget(call_id=call_id)
    assert recording.source == Recording.Source.BRIDGE
    with wave.open(recording.file.path) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 24000
        samples = array("h", wav.readframes(wav.getnframes()))
    loud_ms = lambda side: sum(1 for x in side if abs(x) > 2000) / 24  # noqa: E731
    assert loud_ms(samples[0::2]) > 500  # the caller's tone, left
    assert loud_ms(samples[1::2]) > 300  # the greeting, right
    media = await CallEvent.objects.aget(call_id=call_id, type="webrtc-media")
    assert media.payload["caller_frames_forwarded"] > 50
    assert media.payload["ai_frames_out"] > 10


async def test_try_offer_needs_login_and_csrf(service, inbound_agent, web_settings):
    """Without a session the page and the offer go to the login page; an offer
    without the CSRF token is refused (403); no call is created."""
    async with httpx.AsyncClient(base_url=service) as anonymous:
        page = await anonymous.get(f"/agents/{inbound_agent.pk}/try/")
        assert page.status_code == 302
        await anonymous.get("/accounts/login/")  # sets the CSRF cookie
        reply = await anonymous.post(
            f"/agents/{inbound_agent.pk}/try/offer/",
            json={"type": "offer", "sdp": "v=0"},
            headers={"X-CSRFToken": anonymous.cookies["csrftoken"]},
        )
        assert (
            reply.status_code == 302 and "/accounts/login/" in reply.headers["location"]
        )
    http = await logged_in_http(service, inbound_agent)
    reply = await http.post(
        f"/agents/{inbound_agent.pk}/try/offer/", json={"type": "offer", "sdp": "v=0"}
    )
    assert reply.status_code == 403
    await http.aclose()
    assert not await CallSession.objects.filter(direction="web").aexists()


async def test_operator_hangup_from_the_monitor_ends_the_web_call(
    service, start_fake_realtime, inbound_agent, web_settings
):
    """Control through the call's group (the monitor's hang-up) reaches a web call."""
    from calls.services import acall_control_send

    async with start_fake_realtime(scenarios.DEMO) as fake:
        http = await logged_in_http(service, inbound_agent)
        client = WebRtcTestClient(amplitude=0)
        signal = offer_to(http, f"/agents/{inbound_agent.pk}/try/offer/")
        await client.connect(signal)
        call_id = signal.reply["call_id"]
        await client.wait_event("state")
        await acall_control_send(call_id=call_id, command="hangup", reason="operator")
        await client.wait_event("ended")

        async def completed() -> bool:
            call = await CallSession.objects.aget(pk=call_id)
            return call.status == CallStatus.COMPLETED

        assert await wait_until(completed)
        await fake.connections[0].wait_closed(timeout_s=5)
        await client.close()
        await http.aclose()


async def test_web_handoff_makes_the_ai_take_a_message(
    service, start_fake_realtime, inbound_agent, web_settings
):
    """A handoff on a web call keeps the AI on the line, told to take a message."""
    from handoff.services import ahandoff_request

    async with start_fake_realtime(scenarios.DEMO) as fake:
        http = await logged_in_http(service, inbound_agent)
        client = WebRtcTestClient(amplitude=0)
        signal = offer_to(http, f"/agents/{inbound_agent.pk}/try/offer/")
        await client.connect(signal)
        call_id = signal.reply["call_id"]
        await client.wait_event("state")
        result = await ahandoff_request(call_id=call_id, trigger="operator")
        assert result.status == CallStatus.AI_RESPONDING
        model = fake.connections[0]
        await eventually(
            lambda: any(
                "伝言" in str(e) or "ご連絡先" in str(e)
                for e in model.received_of("conversation.item.create")
            ),
            what="the take-a-message instruction",
        )
        assert await CallEvent.objects.filter(
            call_id=call_id, type="handoff-message"
        ).aexists()
        client.send({"type": "hangup"})
        await client.close()
        await http.aclose()


async def test_drain_ends_a_web_call_with_a_goodbye_and_refuses_new_ones(
    service, start_fake_realtime, inbound_agent, web_settings
):
    """A web call cannot move to another process: a drain refuses new offers (503)
    and, at its deadline, has the AI say goodbye and end the live call."""
    from callcenter import draining

    async with start_fake_realtime(scenarios.DEMO) as fake:
        http = await logged_in_http(service, inbound_agent)
        client = WebRtcTestClient(amplitude=0)
        signal = offer_to(http, f"/agents/{inbound_agent.pk}/try/offer/")
        await client.connect(signal)
        call_id = signal.reply["call_id"]
        await client.wait_event("state")
        try:
            drain = asyncio.create_task(draining.drain_all(timeout_s=0.5))
            await eventually(draining.is_draining, what="the drain")
            reply = await http.post(
                f"/agents/{inbound_agent.pk}/try/offer/",
                json={"type": "offer", "sdp": "v=0\r\n"},
                headers={"X-CSRFToken": http.cookies["csrftoken"]},
            )
            assert reply.status_code == 503
            report = await asyncio.wait_for(drain, timeout=30)
        finally:
            draining.reset()
        assert report.calls == 1
        call = await CallSession.objects.aget(pk=call_id)
        assert call.status == CallStatus.COMPLETED
        creates = fake.connections[0].received_of("response.create")
        assert any("システムの再起動" in str(c) for c in creates)
        assert await CallEvent.objects.filter(call_id=call_id, type="drain").aexists()
        assert await CallSession.objects.filter(direction="web").acount() == 1
        await client.close()
        await http.aclose()
