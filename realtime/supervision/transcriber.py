"""The supervisor's speech, transcribed by a Realtime transcription session (F-75).

While a supervisor barges in or holds the call, their microphone (PCM16 24 kHz,
20 ms frames from the media hub) goes to a second Realtime WebSocket opened with
``intent=transcription``: the same URL as the call's model socket with the query
changed, the same ``Authorization`` header. Its ``session.update`` is the GA
transcription shape (``type: "transcription"``; input format, transcription
model and language, server VAD), and each
``conversation.item.input_audio_transcription.completed`` is handed to
``on_line(item_id, text)``: the bridge saves it as speaker ``agent`` and keeps it
for the hand-back note.

A transcriber that cannot connect or breaks calls ``on_failure(detail)`` once
and stops; the call goes on without the supervisor's lines. Frames fed before the
socket is up wait in a bounded buffer (the first words are not lost to the
handshake); beyond it the oldest go.

No Django here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from realtime.protocol.openai_events import Transcription
from realtime.ws_send import write_text_now

__all__ = [
    "DEFAULT_TRANSCRIPTION",
    "SupervisorTranscriber",
    "transcription_session_update",
    "transcription_url",
]

log = logging.getLogger(__name__)

# When the profile transcribes nothing, the supervisor is still transcribed.
DEFAULT_TRANSCRIPTION: Final = Transcription(model="gpt-4o-transcribe")
CONNECT_TIMEOUT_S: Final = 5.0
MAX_WAITING_FRAMES: Final = 250  # 5 s of 20 ms frames while the socket opens
SILENCE_MS: Final = 500


def transcription_url(model_url: str) -> str:
    """The model socket's URL with ``intent=transcription`` instead of the model."""
    parts = urlsplit(model_url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("model", "intent")
    ]
    query.append(("intent", "transcription"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def transcription_session_update(transcription: Transcription) -> str:
    """The GA ``session.update`` of a transcription session (PCM16 24 kHz in)."""
    config: dict[str, Any] = {"model": transcription.model}
    if transcription.language:
        config["language"] = transcription.language
    if transcription.prompt:
        config["prompt"] = transcription.prompt
    session = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": config,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": SILENCE_MS,
                },
            }
        },
    }
    return json.dumps({"type": "session.update", "session": session})


def _append(pcm24: bytes) -> str:
    audio = base64.b64encode(pcm24).decode("ascii")
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


class SupervisorTranscriber:
    """One supervisor's transcription session, from ``start`` to ``close``."""

    def __init__(
        self,
        *,
        model_url: str,
        api_key: str,
        transcription: Transcription | None,
        on_line: Callable[[str, str], Awaitable[None]],
        on_failure: Callable[[str], Awaitable[None]],
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = transcription_url(model_url)
        self._api_key = api_key
        self._transcription = transcription or DEFAULT_TRANSCRIPTION
        self._on_line = on_line
        self._on_failure = on_failure
        self._connect_timeout_s = connect_timeout_s
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._waiting: deque[str] = deque(maxlen=MAX_WAITING_FRAMES)
        self._closed = False
        self.failed: str | None = None
        self.frames_fed = 0
        self.lines = 0

    def start(self) -> None:
        """Open the session in the background."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="supervisor-transcriber")

    def feed(self, pcm24: bytes) -> None:
        """One frame of the supervisor's microphone; never waits."""
        if self._closed or self.failed is not None:
            return
        self.frames_fed += 1
        frame = _append(pcm24)
        ws = self._ws
        if ws is not None and not self._waiting and write_text_now(ws, frame):
            return
        self._waiting.append(frame)  # sent in order once the socket can take it
        flushing = self._flushing
        if ws is not None and (flushing is None or flushing.done()):
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        ws = self._ws
        while ws is not None and self._waiting and not self._closed:
            frame = self._waiting.popleft()
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return

    async def close(self) -> None:
        """Stop transcribing; lines still in flight are dropped."""
        self._closed = True
        task, self._task = self._task, None
        ws, self._ws = self._ws, None
        if self._flushing is not None:
            self._flushing.cancel()
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=0.5)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _run(self) -> None:
        try:
            async with connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self._api_key}"},
                open_timeout=self._connect_timeout_s,
                max_size=1024 * 1024,
                compression=None,
                user_agent_header="callcenter-bridge",
            ) as ws:
                await ws.send(transcription_session_update(self._transcription))
                self._ws = ws
                if self._waiting:  # what was said while the socket opened
                    self._flushing = asyncio.create_task(self._flush())
                async for raw in ws:
                    await self._on_event(raw)
                if not self._closed:
                    raise ConnectionError(
                        f"closed by the server ({ws.close_code}: {ws.close_reason})"
                    )
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            await self._fail(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must not reach the call
            log.exception("supervisor transcriber failed")
            await self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._ws = None

    async def _on_event(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript") or "").strip()
            if text:
                self.lines += 1
                await self._on_line(str(event.get("item_id") or ""), text)
        elif kind == "error":
            error = event.get("error") or {}
            log.warning(
                "supervisor transcription error %s: %s",
                error.get("code"),
                error.get("message"),
            )
            if error.get("code") in ("invalid_api_key", "beta_api_shape_disabled"):
                raise ConnectionError(f"refused: {error.get('code')}")

    async def _fail(self, detail: str) -> None:
        if self._closed or self.failed is not None:
            return
        self.failed = detail[:300]
        self._waiting.clear()
        log.warning("supervisor transcriber gave up: %s", self.failed)
        with contextlib.suppress(Exception):
            await self._on_failure(self.failed)
