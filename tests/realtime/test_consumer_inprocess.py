"""The media-stream consumer in-process with Channels' WebsocketCommunicator.

The model side is the fake Realtime server on a real socket; Twilio's side is the
communicator, speaking Media Streams frames by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from channels.testing import WebsocketCommunicator

from calls.models import CallSession
from calls.services import acall_control_send
from calls.status import CallStatus
from realtime.emulators import scenarios
from realtime.emulators.audio import silence, speech
from realtime.emulators.caller import sign_request
from realtime.emulators.fake_realtime import FakeRealtimeServer
from tests.calls.factories import CallSessionFactory
from tests.realtime.flow.conftest import API_KEY, AUTH_TOKEN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]
BASE = "https://cc.example.com"
STREAM_SID = "MZ" + "a" * 32


@pytest.fixture
def stream_settings(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_VALIDATE_SIGNATURES = True
    settings.PUBLIC_BASE_URL = BASE
    settings.OPENAI_API_KEY = API_KEY
    return settings


def _frame(event: str, **body) -> str:
    return json.dumps({"event": event, "streamSid": STREAM_SID, **body})


def _start(call: CallSession) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": STREAM_SID,
            "start": {
                "streamSid": STREAM_SID,
                "accountSid": "AC" + "0" * 32,
                "callSid": call.twilio_call_sid,
                "tracks": ["inbound"],
                "customParameters": {
                    "call_id": str(call.pk),
                    "stream_token": call.stream_token,
                },
                "mediaFormat": {
                    "encoding": "audio/x-mulaw",
                    "sampleRate": 8000,
                    "channels": 1,
                },
            },
        }
    )


def _media(n: int, audio: bytes) -> str:
    return _frame(
        "media",
        sequenceNumber=str(n + 1),
        media={
            "track": "inbound",
            "chunk": str(n),
            "timestamp": str(n * 20),
            "payload": base64.b64encode(audio).decode(),
        },
    )


async def _closed_by_the_app(communicator: WebsocketCommunicator) -> None:
    """Wait for the consumer's close, then tell it the socket is gone and let it
    finish, as the server does; an app left running would be cancelled with the
    loop, in the middle of a channel-layer read."""
    output = await communicator.receive_output(timeout=3)
    while output["type"] != "websocket.close":
        output = await communicator.receive_output(timeout=3)
    await communicator.disconnect(code=output.get("code", 1000), timeout=3)


async def _communicator(call: CallSession) -> WebsocketCommunicator:
    from callcenter.asgi import application

    path = f"/api/twilio/media-stream/{call.pk}"
    signature = sign_request(AUTH_TOKEN, f"wss://cc.example.com{path}", {})
    communicator = WebsocketCommunicator(
        application, path, headers=[(b"x-twilio-signature", signature.encode())]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _received_until(communicator, predicate, within_s=8.0):
    frames = []
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            frame = json.loads(await communicator.receive_from(timeout=0.5))
        except TimeoutError:
            continue
        frames.append(frame)
        if predicate(frames):
            return frames
    raise AssertionError(
        f"not seen in {within_s}s: {[f['event'] for f in frames][-20:]}"
    )


async def _waiting_call(stream_settings) -> CallSession:
    call = await asyncio.to_thread(CallSessionFactory, status=CallStatus.RINGING)
    return await CallSession.objects.select_related("agent").aget(pk=call.pk)


async def test_greeting_then_answer_in_process(stream_settings):
    """The model socket opens on connect; the greeting reaches Twilio as media +
    marks; caller speech is forwarded and answered; stop closes the model socket."""
    call = await _waiting_call(stream_settings)
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        stream_settings.OPENAI_REALTIME_URL = fake.url
        communicator = await _communicator(call)
        await fake.wait_for_connection(0, timeout_s=5)  # before `start` (F-16)
        await communicator.send_to(
            text_data=_frame("connected", protocol="Call", version="1.0.0")
        )
        await communicator.send_to(text_data=_start(call))
        greeting = await _received_until(
            communicator, lambda fs: any(f["event"] == "mark" for f in fs)
        )
        media = [f for f in greeting if f["event"] == "media"]
        assert media and all(f["streamSid"] == STREAM_SID for f in greeting)
        assert all(
            len(base64.b64decode(f["media"]["payload"])) % 160 == 0 for f in media[:-1]
        )
        # Echo the marks as Twilio would after playing, then speak and go quiet.
        marks = [f for f in greeting if f["event"] == "mark"]
        for n, mark in enumerate(marks, start=2):
            await communicator.send_to(
                text_data=_frame("mark", sequenceNumber=str(n), mark=mark["mark"])
            )
        frames = [speech(20)] * 50 + [silence(20)] * 40
        for n, audio in enumerate(frames, start=len(marks) + 2):
            await communicator.send_to(text_data=_media(n, audio))
        await _received_until(
            communicator, lambda fs: sum(f["event"] == "media" for f in fs) > 3
        )
        await communicator.send_to(
            text_data=_frame(
                "stop",
                sequenceNumber="999",
                stop={"accountSid": "AC", "callSid": call.twilio_call_sid},
            )
        )
        connection = fake.connections[0]
        await asyncio.wait_for(connection.wait_closed(), timeout=2)
        await _closed_by_the_app(communicator)
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "caller-hangup"
    assert "input_audio_buffer.append" in connection.received_types()


async def _greeted_call(call: CallSession, fake: FakeRealtimeServer):
    """Connect and start the stream; return once the greeting was requested."""
    communicator = await _communicator(call)
    await communicator.send_to(
        text_data=_frame("connected", protocol="Call", version="1.0.0")
    )
    await communicator.send_to(text_data=_start(call))
    connection = await fake.wait_for_connection(0, timeout_s=5)
    await connection.wait_received("response.create")
    return communicator, connection


async def test_control_messages_reach_the_bridge(stream_settings):
    """instruct and hangup sent on the channel layer reach the call's consumer (F-23)."""
    call = await _waiting_call(stream_settings)
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        stream_settings.OPENAI_REALTIME_URL = fake.url
        communicator, connection = await _greeted_call(call, fake)
        await acall_control_send(
            call_id=call.pk, command="instruct", text="料金プランを案内してください。"
        )

        async def instructed():
            return any(
                "料金プランを案内" in json.dumps(e, ensure_ascii=False)
                for e in connection.received
                if isinstance(e, dict) and e.get("type") == "conversation.item.create"
            )

        for _ in range(100):
            if await instructed():
                break
            await asyncio.sleep(0.05)
        assert await instructed()
        await acall_control_send(call_id=call.pk, command="hangup", reason="operator")
        await asyncio.wait_for(connection.wait_closed(), timeout=3)
        await _closed_by_the_app(communicator)
    await call.arefresh_from_db()
    assert call.status == CallStatus.COMPLETED
    assert call.end_reason == "operator"


async def test_a_control_message_without_handler_does_not_end_the_call(
    stream_settings, caplog
):
    """The consumer's own loop logs a control message it cannot handle and goes on:
    later commands still arrive, and the caller's audio still flows."""
    from channels.layers import get_channel_layer

    from calls.groups import call_control_group

    call = await _waiting_call(stream_settings)
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        stream_settings.OPENAI_REALTIME_URL = fake.url
        communicator, connection = await _greeted_call(call, fake)
        await get_channel_layer().group_send(
            call_control_group(call.pk), {"type": "no.such.handler"}
        )
        for _ in range(100):
            if "control message failed" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "control message failed: no.such.handler" in caplog.text
        appended = connection.received_types().count("input_audio_buffer.append")
        await communicator.send_to(text_data=_media(5, speech(20)))
        for _ in range(100):
            if (
                connection.received_types().count("input_audio_buffer.append")
                > appended
            ):
                break
            await asyncio.sleep(0.02)
        assert connection.received_types().count("input_audio_buffer.append") > appended
        await acall_control_send(call_id=call.pk, command="hangup", reason="operator")
        await asyncio.wait_for(connection.wait_closed(), timeout=3)
        await _closed_by_the_app(communicator)
    await call.arefresh_from_db()
    assert call.end_reason == "operator"


async def test_binary_frame_closes_the_stream_in_process(stream_settings):
    call = await _waiting_call(stream_settings)
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        stream_settings.OPENAI_REALTIME_URL = fake.url
        communicator = await _communicator(call)
        await communicator.send_to(text_data=_start(call))
        connection = await fake.wait_for_connection(0, timeout_s=5)
        await communicator.send_to(bytes_data=b"\x00\xff")
        await asyncio.wait_for(connection.wait_closed(), timeout=3)
        await _closed_by_the_app(communicator)
    await call.arefresh_from_db()
    assert call.status == CallStatus.FAILED
    assert call.end_reason == "twilio-protocol-error"


async def test_a_call_talks_with_the_channel_layer_down_and_rejoins_after(
    stream_settings, monkeypatch
):
    """F-71: with the layer (Redis) failing, the stream is accepted and the caller
    hears the greeting; once it works again the consumer joins its control group
    by itself and an instruction reaches the model."""
    from channels.layers import get_channel_layer

    from realtime import consumers

    monkeypatch.setattr(consumers, "LAYER_RETRY_DELAYS_S", (0.05,))
    layer = get_channel_layer()
    down = True
    tries = {"group_add": 0, "receive": 0}
    group_add, receive = layer.group_add, layer.receive

    async def failing_group_add(group, channel):
        tries["group_add"] += 1
        if down:
            raise ConnectionError("Error 111 connecting to redis")
        await group_add(group, channel)

    async def failing_receive(channel):
        tries["receive"] += 1
        if down:
            await asyncio.sleep(0.01)
            raise ConnectionError("Connection closed by server.")
        return await receive(channel)

    monkeypatch.setattr(layer, "group_add", failing_group_add)
    monkeypatch.setattr(layer, "receive", failing_receive)
    call = await _waiting_call(stream_settings)
    async with FakeRealtimeServer(scenarios.DEMO, api_key=API_KEY) as fake:
        stream_settings.OPENAI_REALTIME_URL = fake.url
        communicator, connection = await _greeted_call(call, fake)
        greeting = await _received_until(
            communicator, lambda fs: any(f["event"] == "media" for f in fs)
        )
        assert greeting
        await asyncio.sleep(0.3)
        assert tries["group_add"] >= 2 and tries["receive"] >= 2  # kept trying
        down = False

        async def instructed():
            await acall_control_send(call_id=call.pk, command="instruct", text="再開")
            await asyncio.sleep(0.1)
            return any(
                "再開" in json.dumps(e, ensure_ascii=False)
                for e in connection.received_of("conversation.item.create")
            )

        for _ in range(30):
            if await instructed():
                break
        assert await instructed()
        await acall_control_send(call_id=call.pk, command="hangup", reason="operator")
        await asyncio.wait_for(connection.wait_closed(), timeout=3)
        await _closed_by_the_app(communicator)
    await call.arefresh_from_db()
    assert call.end_reason == "operator"
