"""uvicorn's WebSocket protocol with a short path for whole, unfragmented text frames.

Twilio's media stream is one small JSON text frame every 20 ms each way, and for
each of them websockets' Sans-I/O parser runs a stack of generator coroutines
(`Frame.parse`, `read_exact`, ...), builds a `Frame`, dispatches it through
uvicorn's event handlers, and on the way out builds another `Frame` and serialises
it. py-spy put that machinery at about a third of the service's CPU on the audio
path (bench/README.md), more than the bridge itself.

This subclass of uvicorn's `websockets-sansio` protocol keeps every decision of
websockets and uvicorn but skips the machinery where it cannot change the outcome:

- Incoming bytes are cut into whole frames by `realtime.ws_frames.FrameReader`. The
  text of a final text frame is queued for the app exactly as uvicorn queues it.
  Every other frame (ping, pong, close, binary, fragments) goes to websockets'
  parser whole, so its state is always at a frame boundary, and websockets decides
  as it always does. The first data frame that is not on the short path (a
  fragment, a binary message), or anything websockets would refuse, hands the rest
  of the connection to websockets.
- An outgoing text message on an open, writable socket is framed here (server
  frames are not masked) and written at once, as websockets would frame it.
- The short path starts only after the app accepted the socket, with no extension
  negotiated (permessage-deflate would change the bytes) and websockets' parser
  idle at a frame boundary; otherwise the connection is websockets' throughout.

Select it with `uvicorn --ws realtime.uvicorn_ws:FastTextWebSocketProtocol` (the
serve command, the Procfile and the benchmark do). The websockets internals read
here (`reader.buffer`, the parser coroutine) are pinned in requirements.txt;
tests/realtime/test_uvicorn_ws.py fails if an upgrade moves them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from websockets.protocol import State

from realtime.ws_frames import (
    FrameReader,
    is_data_frame,
    parser_at_frame_boundary,
    read_frames,
    text_frame,
)

PROTOCOL = "realtime.uvicorn_ws:FastTextWebSocketProtocol"


def uvicorn_ws_args(protocol: str = PROTOCOL) -> list[str]:
    """uvicorn's WebSocket flags, the same for the serve command and the benchmark."""
    # Base64 audio barely compresses; deflating it costs CPU on every frame.
    return ["--ws", protocol, "--ws-per-message-deflate", "false"]


class AsgiInbox:
    """The app's receive queue: what uvicorn uses of `asyncio.Queue`, without the rest.

    uvicorn needs `put_nowait`, `get` and `empty`; `asyncio.Queue` also keeps task
    accounting and a `finished` event up to date on every put, 50 times a second a call.
    """

    __slots__ = ("_getters", "_items", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._loop = loop

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_next()

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            getter = self._loop.create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items:
                    self._wake_next()  # this getter was woken but will not take it
                raise
        return self._items.popleft()

    def _wake_next(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return


class FastTextWebSocketProtocol(WebSocketsSansIOProtocol):
    _frames: FrameReader | None = None  # set while the short path is taken

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = AsgiInbox(self.loop)  # type: ignore[assignment]

    # ------------------------------------------------------------------ incoming

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames is None:
            super().data_received(data)
            return
        frames.feed(data)
        if not read_frames(frames, self._receive_text, self._to_websockets):
            self._leave_short_path()
        if (
            not self.queue.empty()
            and not self.read_paused
            and not self.transport.is_closing()
        ):
            # As uvicorn does: read no more until the app has taken what is queued.
            self.read_paused = True
            self.transport.pause_reading()

    def _receive_text(self, text: str) -> None:
        if not self.close_sent:  # as uvicorn: nothing reaches an app past its close
            self.queue.put_nowait({"type": "websocket.receive", "text": text})

    def _to_websockets(self, frame: bytes) -> bool:
        """websockets takes a frame off the short path; True if the path goes on."""
        super().data_received(frame)
        return not is_data_frame(frame) and self.conn.state is State.OPEN

    def _leave_short_path(self) -> None:
        assert self._frames is not None
        rest = self._frames.rest()
        self._frames = None
        if rest:
            super().data_received(rest)

    # ------------------------------------------------------------------ outgoing

    async def send(self, message: Any) -> None:
        if (
            self._frames is not None
            and message["type"] == "websocket.send"
            and message.get("bytes") is None
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
            and self.conn.state is State.OPEN
        ):
            text = message.get("text")
            if text is not None:
                self.transport.write(text_frame(text.encode(), masked=False))
                return
        await super().send(message)
        if (
            message["type"] == "websocket.accept"
            and self.handshake_complete
            and not self.close_sent
            and self.conn.state is State.OPEN
            and not self.conn.extensions
            and parser_at_frame_boundary(self.conn)
        ):
            self._frames = FrameReader(masked=True, max_size=self.config.ws_max_size)
