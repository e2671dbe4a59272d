"""The floor: the least a Twilio ⇄ Realtime relay can do on the same stack.

A bare ASGI app, served by uvicorn with the flags the service gets, on the same
WebSocket libraries, the same short path for text frames (`realtime/uvicorn_ws.py`,
`realtime/ws_connections.py`) and orjson, but with no Django, no Channels, no bridge
state and no database. It answers the voice webhook with a `<Connect><Stream>`, opens one model
socket per call, sends one `session.update`, then turns each media frame into an
`input_audio_buffer.append` and each audio delta into a media frame. Nothing else: no
signature checks, no marks, no barge-in, no transcripts, no re-chunking, no figures.

`bench/relay.py` runs it like the service at every N (`--no-floor` skips it), so the
bridge's CPU and latency read as a ratio of this floor measured in the same run: what
our features cost over what the stack itself costs. It is a yardstick, not a product.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.protocol.openai_events import SessionConfig, session_update
from realtime.ws_connections import ShortPathClientConnection
from realtime.ws_send import write_text_now

Scope = dict[str, Any]
Receive = Any
Send = Any

STREAM_PATH = "/bare/stream"
_MODEL_URL = (
    os.environ.get("OPENAI_REALTIME_URL", "")
    + "?"
    + urlencode({"model": "gpt-realtime"})
)
_API_KEY = os.environ.get("OPENAI_API_KEY", "")
_live_calls = 0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket" and scope["path"] == STREAM_PATH:
        await _relay(receive, send)
    elif scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass  # the webhook's form is not read: every call gets the same stream
    if scope["path"] == "/api/health":
        body = orjson.dumps({"status": "ok", "live_calls_in_process": _live_calls})
        content_type = b"application/json"
    else:
        host = dict(scope["headers"]).get(b"host", b"").decode()
        url = quoteattr(f"ws://{host}{STREAM_PATH}")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Connect><Stream url={url}/></Connect></Response>"
        ).encode()
        content_type = b"text/xml"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _relay(receive: Receive, send: Send) -> None:
    global _live_calls
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    _live_calls += 1
    try:
        async with connect(
            _MODEL_URL,
            additional_headers={"Authorization": f"Bearer {_API_KEY}"},
            compression=None,
            create_connection=ShortPathClientConnection,
        ) as model:
            await model.send(session_update(SessionConfig()))
            stream: dict[str, str] = {}
            back = asyncio.create_task(_model_to_twilio(model, send, stream))
            try:
                await _twilio_to_model(receive, model, stream)
            finally:
                back.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await back
    finally:
        _live_calls -= 1


async def _twilio_to_model(
    receive: Receive, model: ClientConnection, stream: dict[str, str]
) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        event = orjson.loads(message["text"])
        kind = event["event"]
        if kind == "media":
            append = orjson.dumps(
                {
                    "type": "input_audio_buffer.append",
                    "audio": event["media"]["payload"],
                }
            )
            if not write_text_now(model, append):
                await model.send(append, text=True)
        elif kind == "start":
            stream["sid"] = event["streamSid"]
        elif kind == "stop":
            return


async def _model_to_twilio(
    model: ClientConnection, send: Send, stream: dict[str, str]
) -> None:
    async for raw in model:
        event = orjson.loads(raw)
        if event["type"] == "response.output_audio.delta" and "sid" in stream:
            frame = {
                "event": "media",
                "streamSid": stream["sid"],
                "media": {"payload": event["delta"]},
            }
            await send({"type": "websocket.send", "text": orjson.dumps(frame).decode()})
