"""F-15: only a known, waiting call with its one-time token and a valid signature streams;
anything else is closed with 1008 and costs no OpenAI connection."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from calls.models import CallSession
from calls.status import CallStatus
from realtime.emulators.caller import SimulatedCaller, sign_request
from tests.calls.factories import CallSessionFactory
from tests.realtime.flow.conftest import AUTH_TOKEN, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]


def _stream_url(service: str, call_id: int) -> str:
    return service.replace("http://", "ws://") + f"/api/twilio/media-stream/{call_id}"


async def _waiting_call(agent) -> CallSession:
    return await asyncio.to_thread(
        CallSessionFactory,
        organization=agent.organization,
        agent=agent,
        status=CallStatus.RINGING,
    )


async def _close_code(
    url: str, *, auth_token: str | None, parameters=None
) -> int | None:
    """Open a stream the way Twilio does; return the close code the bridge sent."""
    headers = {}
    if auth_token is not None:
        wss = "wss://" + url.split("://", 1)[1]
        headers["X-Twilio-Signature"] = sign_request(auth_token, wss, {})
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            await ws.send(
                json.dumps(
                    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
                )
            )
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "streamSid": "MZ" + "0" * 32,
                        "start": {
                            "streamSid": "MZ" + "0" * 32,
                            "accountSid": "AC" + "0" * 32,
                            "callSid": "CA" + "0" * 32,
                            "tracks": ["inbound"],
                            "customParameters": parameters or {},
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": 8000,
                                "channels": 1,
                            },
                        },
                    }
                )
            )
            await asyncio.wait_for(ws.recv(), timeout=5)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


async def test_unknown_call_is_refused_without_model(
    service, start_fake_realtime, inbound_agent
):
    async with start_fake_realtime() as fake:
        assert (
            await _close_code(_stream_url(service, 987654), auth_token=AUTH_TOKEN)
            == 1008
        )
        await asyncio.sleep(0.2)
        assert fake.connection_count == 0


async def test_unsigned_or_forged_upgrade_is_refused_without_model(
    service, start_fake_realtime, inbound_agent
):
    call = await _waiting_call(inbound_agent)
    async with start_fake_realtime() as fake:
        for token in (None, "not-the-auth-token"):
            code = await _close_code(
                _stream_url(service, call.pk),
                auth_token=token,
                parameters={"stream_token": call.stream_token},
            )
            assert code == 1008
        await asyncio.sleep(0.2)
        assert fake.connection_count == 0
    await call.arefresh_from_db()
    assert call.status == CallStatus.RINGING and call.stream_token_used_at is None


async def test_wrong_token_is_refused_and_the_model_is_closed(
    service, start_fake_realtime, inbound_agent
):
    call = await _waiting_call(inbound_agent)
    async with start_fake_realtime() as fake:
        code = await _close_code(
            _stream_url(service, call.pk),
            auth_token=AUTH_TOKEN,
            parameters={"stream_token": "guessed"},
        )
        assert code == 1008
        assert await wait_until(lambda: _async(fake.open_connections == 0), within_s=3)
    await call.arefresh_from_db()
    assert call.status == CallStatus.RINGING


async def test_token_is_one_time_and_a_second_stream_is_refused(
    service, start_fake_realtime, inbound_agent
):
    call = await _waiting_call(inbound_agent)
    url = _stream_url(service, call.pk)
    params = {"stream_token": call.stream_token}
    async with start_fake_realtime() as fake:
        first = SimulatedCaller(
            url, time_scale=0.25, auth_token=AUTH_TOKEN, parameters=params
        )
        await first.connect()

        async def streaming():
            await call.arefresh_from_db()
            return call.status == CallStatus.AI_RESPONDING

        assert await wait_until(streaming, within_s=5)
        assert await _close_code(url, auth_token=AUTH_TOKEN, parameters=params) == 1008
        assert fake.connection_count == 1
        assert not first.closed
        await first.hang_up()
    first.assert_clean()


async def test_validation_off_only_when_set(
    service, start_fake_realtime, inbound_agent, flow_settings
):
    """With TWILIO_VALIDATE_SIGNATURES=false an unsigned stream is accepted, but the
    model socket opens only after the token checks out."""
    flow_settings.TWILIO_VALIDATE_SIGNATURES = False
    call = await _waiting_call(inbound_agent)
    async with start_fake_realtime() as fake:
        code = await _close_code(
            _stream_url(service, call.pk),
            auth_token=None,
            parameters={"stream_token": "guessed"},
        )
        assert code == 1008
        assert fake.connection_count == 0
        good = SimulatedCaller(
            _stream_url(service, call.pk),
            time_scale=0.25,
            parameters={"stream_token": call.stream_token},
        )
        await good.connect()
        assert await wait_until(lambda: _async(fake.connection_count == 1), within_s=5)
        await good.hang_up()


async def _async(value):
    return value
