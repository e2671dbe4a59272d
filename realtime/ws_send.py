"""Send a WebSocket text frame without websockets' per-message coroutine machinery.

`Connection.send` enters an async context manager, checks for fragmented sends,
writes, and awaits `drain()` for every message. On the audio path that bookkeeping
cost more than the frame itself: py-spy put about a third of the bridge's model
sends in the context manager (bench/README.md). When the socket is open and not
back-pressured, none of it changes what happens: the frame goes to the transport at
once, exactly as `send` would put it there. In every other case (closing, paused by
flow control, a fragmented message in progress) the caller falls back to `send`,
which waits and raises as documented.

No Django here: the bridge, the emulators and the load generator all use it.
The attributes read below are websockets' (pinned in requirements.txt);
tests/realtime/test_ws_send.py fails if an upgrade moves them.
"""

from __future__ import annotations

from websockets.asyncio.connection import Connection
from websockets.protocol import Side, State

from realtime.ws_frames import text_frame


def write_text_now(connection: Connection, message: str | bytes) -> bool:
    """Write one text frame now if nothing needs waiting for; False if not written."""
    protocol = connection.protocol
    if (
        protocol.state is not State.OPEN
        or connection.send_in_progress is not None
        or protocol.expect_continuation_frame
        or connection.paused
        or connection.transport.is_closing()
    ):
        return False
    payload = message.encode() if isinstance(message, str) else message
    if protocol.extensions or protocol.writes:
        protocol.send_text(payload)
        connection.send_data()
    else:
        # The frame websockets would build, without its `Frame` round trip.
        connection.transport.write(
            text_frame(payload, masked=protocol.side is Side.CLIENT)
        )
    return True


async def send_text(connection: Connection, message: str | bytes) -> None:
    """Send one text frame: at once when possible, else through `Connection.send`."""
    if not write_text_now(connection, message):
        await connection.send(message, text=True)
