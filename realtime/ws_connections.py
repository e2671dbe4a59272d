"""websockets' asyncio connections with the short path for whole text frames.

The bridge's model socket, the simulated caller and the fake model receive one small
JSON text frame per 20 ms per call. These subclasses cut incoming bytes into whole
frames (`realtime.ws_frames.FrameReader`) and keep each final text frame's text for
`recv()`, skipping websockets' generator-based parser and its message assembler;
every other frame goes to that parser whole, so websockets answers pings, handles
close and refuses bad frames exactly as before. The short path starts once the socket is
open, with no extension negotiated and websockets' parser idle at a frame
boundary; the first data frame off the short path (a fragment, a binary message)
or anything websockets would refuse hands it the rest of the connection.

Pass `create_connection=ShortPathClientConnection` to `websockets.asyncio.client.
connect`, or `ShortPathServerConnection` to `websockets.asyncio.server.serve`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConcurrencyError
from websockets.protocol import Event, Side, State

from realtime.ws_frames import (
    FrameReader,
    is_data_frame,
    parser_at_frame_boundary,
    read_frames,
)


class _ShortPath(Connection):
    _frames: FrameReader | None = None
    _short_path_possible = True
    _waiter: asyncio.Future[None] | None = None  # the recv() waiting for a message
    _reading_paused = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._texts: collections.deque[str] = collections.deque()  # short path's

    # ------------------------------------------------------------- incoming bytes

    def data_received(self, data: bytes) -> None:
        frames = self._frames
        if frames is None:
            if self._short_path_possible and self.protocol.state is State.OPEN:
                frames = self._take_short_path()
            if frames is None:
                super().data_received(data)
                return
        texts = self._texts
        frames.feed(data)
        if not read_frames(frames, texts.append, self._to_websockets):
            self._leave_short_path()
        if texts:
            self._wake()
            high = self.recv_messages.high
            if high is not None and len(texts) > high and not self._reading_paused:
                # As websockets' own queue does: stop reading until recv() catches up.
                self._reading_paused = True
                self.transport.pause_reading()

    def _to_websockets(self, frame: bytes) -> bool:
        """websockets takes a frame off the short path; True if the path goes on."""
        super().data_received(frame)
        return not is_data_frame(frame) and self.protocol.state is State.OPEN

    def _take_short_path(self) -> FrameReader | None:
        protocol = self.protocol
        if protocol.extensions or protocol.max_fragment_size is not None:
            self._short_path_possible = False
            return None
        if (
            protocol.current_size is None
            and parser_at_frame_boundary(protocol)
            # Messages queued by websockets must be received before any of ours.
            and not self.recv_messages.frames
            and not self.recv_messages.get_in_progress
        ):
            self._frames = FrameReader(
                masked=protocol.side is Side.SERVER,
                max_size=protocol.max_message_size,
            )
        return self._frames

    def _leave_short_path(self) -> None:
        assert self._frames is not None
        rest = self._frames.rest()
        self._frames = None
        self._short_path_possible = False
        if rest:
            super().data_received(rest)

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        self._wake()  # a message, or a close, websockets queued itself

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------------- messages

    async def recv(self, decode: bool | None = None) -> Any:
        """websockets' `recv`, served from the short path's messages first.

        Only whole text messages are ever on the short path, and websockets' own
        queue is empty when it starts, so taking ours first keeps the order. This
        waits on its own, never inside websockets' `recv`, so that a wait begun
        before the short path starts still sees its messages.
        """
        if self._waiter is not None or self.recv_messages.get_in_progress:
            raise ConcurrencyError("recv() is already running")
        texts = self._texts
        while not texts:
            if self.recv_messages.frames or self.recv_messages.closed:
                return await super().recv(decode)
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        text = texts.popleft()
        low = self.recv_messages.low
        if self._reading_paused and (low is None or len(texts) <= low):
            self._reading_paused = False
            # After a hand-over websockets' queue may hold reading paused itself.
            if not self.recv_messages.paused:
                self.transport.resume_reading()
        return text.encode() if decode is False else text

    async def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Any]:
        """A message in one piece: the short path holds only whole messages."""
        yield await self.recv(decode)


class ShortPathClientConnection(_ShortPath, ClientConnection):
    pass


class ShortPathServerConnection(_ShortPath, ServerConnection):
    pass
