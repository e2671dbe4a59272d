"""`FastTextWebSocketProtocol` on a real uvicorn server: same ASGI events, same frames
and same closes as uvicorn's own `websockets-sansio` protocol, with the short path on
only where it may be.

A pure-ASGI app (no Django) records every event it receives and echoes messages;
clients are websockets' asyncio client or a bare TCP connection that builds and reads
frames by hand (for what a well-behaved client will not send).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode

from realtime.uvicorn_ws import AsgiInbox, FastTextWebSocketProtocol

TIMEOUT = 3.0
FAST = FastTextWebSocketProtocol
STOCK = "websockets-sansio"  # uvicorn's own Sans-I/O protocol, which FAST extends
BOTH = pytest.mark.parametrize("ws", [FAST, STOCK], ids=["fast", "stock"])

Event = dict[str, Any]


# --------------------------------------------------------------------------- the app


@dataclass
class Session:
    """One WebSocket connection as the app saw it."""

    path: str
    events: list[Event] = field(default_factory=list)
    # /send-after-disconnect: what a send after the disconnect did ("sent" or the error).
    after_disconnect: BaseException | str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self) -> list[Event]:
        return [e for e in self.events if e["type"] == "websocket.receive"]


class RecordingApp:
    """Records every receive event, echoes text as text and bytes as bytes.

    Paths: /echo; /hold (after the accept, reads nothing until `release` is set);
    /accept-on-release (accepts once `release` is set); /send-after-disconnect (tries
    one more send 0.1 s after its disconnect event). Texts "cmd:close:CODE" close the
    socket with CODE; "cmd:burst:N" sends N extra texts.
    """

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.release = asyncio.Event()

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Event]],
        send: Callable[[Event], Awaitable[None]],
    ) -> None:
        assert scope["type"] == "websocket"
        session = Session(scope["path"])
        self.sessions.append(session)
        try:
            await self._run(session, receive, send)
        finally:
            session.finished.set()

    async def _run(
        self,
        session: Session,
        receive: Callable[[], Awaitable[Event]],
        send: Callable[[Event], Awaitable[None]],
    ) -> None:
        async def record() -> Event:
            event = await receive()
            session.events.append(event)
            return event

        assert (await record())["type"] == "websocket.connect"
        if session.path == "/accept-on-release":
            await self.release.wait()
        await send({"type": "websocket.accept"})
        if session.path == "/hold":
            await self.release.wait()
        while True:
            event = await record()
            if event["type"] == "websocket.disconnect":
                if session.path == "/send-after-disconnect":
                    await asyncio.sleep(0.1)  # the server sees connection_lost
                    try:
                        await send({"type": "websocket.send", "text": "too late"})
                    except Exception as exc:
                        session.after_disconnect = exc
                    else:
                        session.after_disconnect = "sent"
                return
            text = event.get("text")
            if text is not None and text.startswith("cmd:close:"):
                code = int(text.removeprefix("cmd:close:"))
                await send({"type": "websocket.close", "code": code, "reason": "bye"})
                # Keep reading until the connection is gone: nothing may arrive
                # between the disconnect uvicorn queues at the close and the one
                # connection_lost queues.
                disconnects = 0
                while disconnects < 2:
                    event = await asyncio.wait_for(record(), TIMEOUT)
                    disconnects += event["type"] == "websocket.disconnect"
                return
            if text is not None and text.startswith("cmd:burst:"):
                for i in range(int(text.removeprefix("cmd:burst:"))):
                    await send({"type": "websocket.send", "text": f"burst {i}"})
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"]})


# ------------------------------------------------------------------------ the server


@dataclass
class Served:
    server: uvicorn.Server
    app: RecordingApp
    port: int
    raw_clients: list[RawClient] = field(default_factory=list)

    def url(self, path: str = "/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def connection(self) -> WebSocketsSansIOProtocol:
        """The one WebSocket connection the server holds."""
        found = [
            c
            for c in self.server.server_state.connections
            if isinstance(c, WebSocketsSansIOProtocol)
        ]
        assert len(found) == 1, found
        return found[0]

    async def open_raw(
        self, path: str = "/echo", *, read_response: bool = True
    ) -> RawClient:
        client = await RawClient.open(self.port, path, read_response=read_response)
        self.raw_clients.append(client)
        return client

    def session(self) -> Session:
        assert len(self.app.sessions) == 1
        return self.app.sessions[0]

    async def finished(self) -> Session:
        session = self.session()
        await asyncio.wait_for(session.finished.wait(), TIMEOUT)
        return session


@contextlib.asynccontextmanager
async def serving(ws: Any = FAST, **options: Any) -> AsyncIterator[Served]:
    """A uvicorn server on 127.0.0.1 at a free port, in this event loop.

    Started with `Server.startup()` rather than `serve()`, and stopped by `stop()`:
    `serve()`'s main loop and shutdown sleep 0.1 s at a time, which over this file's
    servers would be most of its run time.
    """
    app = RecordingApp()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ws=ws,
        lifespan="off",
        log_level="warning",
        **options,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    served = Served(server, app, port)
    try:
        yield served
    finally:
        app.release.set()
        for client in served.raw_clients:
            client.writer.close()
        await stop(server)


async def stop(server: uvicorn.Server) -> None:
    """What `Server.shutdown()` does, without its fixed sleeps."""
    for listener in server.servers:
        listener.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    state = server.server_state
    await eventually(lambda: not state.connections and not state.tasks)


def short_path_on(protocol: WebSocketsSansIOProtocol) -> bool:
    assert isinstance(protocol, FastTextWebSocketProtocol)
    return protocol._frames is not None


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(int(TIMEOUT / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def receive_text(text: str) -> Event:
    return {"type": "websocket.receive", "text": text}


def receive_bytes(data: bytes) -> Event:
    return {"type": "websocket.receive", "bytes": data}


# ---------------------------------------------------------------- a hand-made client


async def open_on_short_path(served: Served, first: str) -> Any:
    """A raw client whose first text has come back (the socket is on the short path)."""
    client = await served.open_raw()
    await client.send(client_text(first))
    assert (await client.read_frame()).data == first.encode()
    return client


def assert_disconnected_with(session: Any, code: int) -> None:
    """The app's last event is the disconnect, with the close code the client got."""
    assert session.events[-1]["type"] == "websocket.disconnect"
    assert session.events[-1]["code"] == code


def client_frame(opcode: Opcode, payload: bytes | str, *, fin: bool = True) -> bytes:
    """A frame as a client sends it (masked)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return Frame(opcode, data, fin).serialize(mask=True)


def client_text(text: str | bytes, *, fin: bool = True) -> bytes:
    return client_frame(Opcode.TEXT, text, fin=fin)


def client_close(code: int, reason: str = "") -> bytes:
    return client_frame(Opcode.CLOSE, Close(code, reason).serialize())


class RawClient:
    """A WebSocket client on a bare TCP connection; frames are built and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, path: str = "/echo", *, read_response: bool = True
    ) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n".encode()
        )
        client = cls(reader, writer)
        if read_response:
            await client.read_response()
        return client

    async def read_response(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101 "), head

    async def send(self, *frames: bytes) -> None:
        """All the frames in one TCP write."""
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def trickle(self, data: bytes, *, step: int, pause: float) -> None:
        """`data` in writes of `step` bytes, `pause` seconds apart."""
        for start in range(0, len(data), step):
            self.writer.write(data[start : start + step])
            await self.writer.drain()
            await asyncio.sleep(pause)

    async def read_raw_frame(self) -> bytes:
        async def read() -> bytes:
            head = await self.reader.readexactly(2)
            assert not head[1] & 0x80, "a server frame must not be masked"
            length = head[1] & 0x7F
            extended = b""
            if length == 126:
                extended = await self.reader.readexactly(2)
                (length,) = struct.unpack("!H", extended)
            elif length == 127:
                extended = await self.reader.readexactly(8)
                (length,) = struct.unpack("!Q", extended)
            return head + extended + await self.reader.readexactly(length)

        return await asyncio.wait_for(read(), TIMEOUT)

    async def read_frame(self) -> Frame:
        raw = await self.read_raw_frame()
        length = raw[1] & 0x7F
        header = 2 + {126: 2, 127: 8}.get(length, 0)
        return Frame(Opcode(raw[0] & 0x0F), raw[header:], fin=bool(raw[0] & 0x80))

    async def read_close(self) -> Close:
        """The server's close frame (the next frame), then the end of the stream."""
        frame = await self.read_frame()
        assert frame.opcode is Opcode.CLOSE, frame
        assert await self.at_eof()
        return Close.parse(frame.data)

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""

    def drop(self) -> None:
        """Gone without a close frame."""
        self.writer.transport.abort()


async def echo_round(client: ClientConnection, message: str | bytes) -> None:
    await client.send(message)
    assert await asyncio.wait_for(client.recv(), TIMEOUT) == message


# ------------------------------------------------------------------- text, in order


async def test_many_texts_echo_whole_and_in_order_on_the_short_path() -> None:
    messages = [f"message {i} " + "é" * (i % 7) for i in range(300)]
    messages += [
        "",
        "日本語 🎧",
        "\x00",
        "a" * 125,
        "b" * 126,
        "c" * 65535,
        "d" * 65536,
    ]
    async with serving() as served, connect(served.url(), compression=None) as client:
        protocol = served.connection()
        assert type(protocol) is FastTextWebSocketProtocol
        assert isinstance(protocol.queue, AsgiInbox)
        assert short_path_on(protocol)  # from the accept on

        async def send_all() -> None:
            for message in messages:
                await client.send(message)

        sending = asyncio.create_task(send_all())
        echoed = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in messages]
        await sending
        assert echoed == messages
        assert served.session().events == [
            {"type": "websocket.connect"},
            *(receive_text(m) for m in messages),
        ]
        assert short_path_on(protocol)  # final text frames never leave it


async def test_many_frames_in_one_tcp_write_arrive_in_order() -> None:
    messages = [f"{i}:" + "x" * (i * 37 % 300) for i in range(60)]
    async with serving() as served:
        client = await served.open_raw()
        await client.send(*(client_text(m) for m in messages))
        for message in messages:
            frame = await client.read_frame()
            assert (frame.opcode, frame.data.decode()) == (Opcode.TEXT, message)
        assert served.session().received() == [receive_text(m) for m in messages]
        assert short_path_on(served.connection())


async def test_a_70000_byte_text_and_its_echo_use_the_64_bit_length() -> None:
    message = ("0123456789abcdé" * 5000)[:70000]
    payload = message.encode()
    assert len(payload) > 65535
    async with serving() as served:
        client = await served.open_raw()
        sent = client_text(payload)
        assert sent[1] & 0x7F == 127
        await client.send(sent)
        raw = await client.read_raw_frame()
        # Byte for byte the frame websockets would have written.
        assert raw == Frame(Opcode.TEXT, payload).serialize(mask=False)
        assert served.session().received() == [receive_text(message)]
        assert short_path_on(served.connection())


class ChunkCountingProtocol(FastTextWebSocketProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunks: list[int] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(len(data))
        super().data_received(data)


async def test_messages_split_into_many_small_tcp_writes_arrive_whole() -> None:
    first = "split across writes: " + "ü" * 40  # 16-bit length, a 2-byte UTF-8 char
    second = "second"
    long = "L" * 70000
    async with serving(ChunkCountingProtocol) as served:
        client = await served.open_raw()
        protocol = served.connection()
        assert isinstance(protocol, ChunkCountingProtocol)
        before = len(protocol.chunks)
        await client.trickle(
            client_text(first) + client_text(second), step=3, pause=0.001
        )
        for expected in (first, second):
            assert (await client.read_frame()).data.decode() == expected
        await client.trickle(client_text(long), step=4096, pause=0.001)
        assert (await client.read_frame()).data.decode() == long
        # The server really saw the messages in pieces.
        assert len(protocol.chunks) - before > 40
        assert served.session().received() == [
            receive_text(first),
            receive_text(second),
            receive_text(long),
        ]
        assert short_path_on(protocol)


async def test_receive_events_are_what_uvicorns_own_protocol_gives() -> None:
    messages = ["plain", "", "日本語", '{"event":"media"}', "z" * 70000]
    results = []
    for ws in (FAST, STOCK):
        async with (
            serving(ws) as served,
            connect(served.url(), compression=None) as client,
        ):
            for message in messages:
                await echo_round(client, message)
            results.append(served.session().received())
    fast, stock = results
    assert fast == stock
    assert fast == [receive_text(m) for m in messages]
    assert all(type(e["text"]) is str and e.keys() == {"type", "text"} for e in fast)


# ------------------------------------------------------------------ control frames


async def test_a_ping_gets_a_pong_with_its_payload_on_the_short_path() -> None:
    async with serving() as served:
        client = await served.open_raw()
        payload = b"\x00ping\xff" + bytes(range(100))
        await client.send(
            client_text("before"),
            client_frame(Opcode.PING, payload),
            client_text("after"),
        )
        frames = [await client.read_frame() for _ in range(3)]
        # The pong is written as the ping is read, before the app echoes anything.
        assert [(f.opcode, bytes(f.data)) for f in frames] == [
            (Opcode.PONG, payload),
            (Opcode.TEXT, b"before"),
            (Opcode.TEXT, b"after"),
        ]
        await client.send(client_frame(Opcode.PING, b""))
        frame = await client.read_frame()
        assert (frame.opcode, frame.data) == (Opcode.PONG, b"")
        assert short_path_on(served.connection())
        assert served.session().received() == [
            receive_text("before"),
            receive_text("after"),
        ]


async def test_websockets_client_ping_is_answered() -> None:
    async with serving() as served, connect(served.url(), compression=None) as client:
        pong = await client.ping(b"are you there")
        await asyncio.wait_for(pong, TIMEOUT)
        await echo_round(client, "still here")
        assert short_path_on(served.connection())


async def test_server_keepalive_pings_are_answered_on_the_short_path() -> None:
    async with (
        serving(ws_ping_interval=0.05, ws_ping_timeout=0.3) as served,
        connect(served.url(), compression=None) as client,
    ):
        protocol = served.connection()
        await echo_round(client, "one")
        await asyncio.sleep(0.6)  # several pings; a missed pong closes with 1011
        await echo_round(client, "two")
        assert protocol.last_ping_rtt > 0  # uvicorn took the pongs
        assert short_path_on(protocol)
        assert client.close_code is None


# ----------------------------------------------------- leaving the short path


async def test_a_fragmented_text_arrives_as_one_message_and_ends_the_short_path() -> (
    None
):
    async with serving() as served, connect(served.url(), compression=None) as client:
        protocol = served.connection()
        await echo_round(client, "first")
        assert short_path_on(protocol)
        await client.send(["frag", "men", "ted ✓"])
        await client.send("after 1")
        await client.send("after 2")
        echoed = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(3)]
        assert echoed == ["fragmented ✓", "after 1", "after 2"]
        assert not short_path_on(protocol)
        assert served.session().received() == [
            receive_text(t) for t in ("first", "fragmented ✓", "after 1", "after 2")
        ]


async def test_a_fragmented_text_sent_with_later_frames_in_one_write() -> None:
    async with serving() as served:
        client = await served.open_raw()
        await client.send(
            client_text("a"),
            client_text("b", fin=False),
            client_frame(Opcode.CONT, "c", fin=False),
            client_frame(Opcode.CONT, "d"),
            client_text("e"),
        )
        got = [(await client.read_frame()).data.decode() for _ in range(3)]
        assert got == ["a", "bcd", "e"]
        assert served.session().received() == [
            receive_text(t) for t in ("a", "bcd", "e")
        ]
        assert not short_path_on(served.connection())


async def test_a_binary_message_arrives_as_bytes_and_ends_the_short_path() -> None:
    data = b"\x00\xff\x80 binary " + bytes(range(256))
    async with serving() as served, connect(served.url(), compression=None) as client:
        protocol = served.connection()
        await echo_round(client, "first")
        assert short_path_on(protocol)
        await echo_round(client, data)
        assert not short_path_on(protocol)
        await echo_round(client, "after")
        received = served.session().received()
        assert received == [
            receive_text("first"),
            receive_bytes(data),
            receive_text("after"),
        ]
        assert type(received[1]["bytes"]) is bytes


@BOTH
async def test_reading_pauses_while_a_message_waits_for_the_app(ws: Any) -> None:
    """uvicorn reads no more once a message is queued, until the app takes it. Here
    the message comes in the same TCP read as the first fragment of the next one."""
    async with serving(ws) as served:
        client = await served.open_raw("/hold")
        protocol = served.connection()
        await client.send(client_text("queued"), client_text("frag", fin=False))
        await eventually(lambda: protocol.conn.current_size is not None)
        assert not protocol.queue.empty()  # "queued" waits for the app
        assert protocol.read_paused is True, "reads on while a message waits"
        served.app.release.set()
        await client.send(client_frame(Opcode.CONT, "ment"))
        got = [(await client.read_frame()).data.decode() for _ in range(2)]
        assert got == ["queued", "fragment"]


# ---------------------------------------------------------------- refused frames


@BOTH
@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"ok \xe3\x81", b"\xed\xa0\x80", b"x" * 200 + b"\xc0\xaf"],
    ids=["invalid-byte", "truncated", "surrogate", "overlong-after-200"],
)
async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    ws: Any, bad: bytes
) -> None:
    async with serving(ws) as served:
        client = await open_on_short_path(served, "good")
        await client.send(client_text(bad), client_text("never read"))
        assert (await client.read_close()).code == 1007
        session = await served.finished()
        assert session.received() == [receive_text("good")]
        assert_disconnected_with(session, 1007)


@BOTH
async def test_a_frame_over_ws_max_size_closes_with_1009(ws: Any) -> None:
    async with serving(ws, ws_max_size=1024) as served:
        client = await served.open_raw()
        await client.send(client_text("m" * 1024))  # the limit itself is fine
        assert (await client.read_frame()).data == b"m" * 1024
        await client.send(client_text("n" * 1025))
        assert (await client.read_close()).code == 1009
        session = await served.finished()
        assert session.received() == [receive_text("m" * 1024)]
        assert_disconnected_with(session, 1009)


@BOTH
async def test_an_oversized_frame_is_refused_from_its_header(ws: Any) -> None:
    """The server closes without waiting for (or keeping) a payload it will refuse."""
    async with serving(ws, ws_max_size=1024) as served:
        client = await open_on_short_path(served, "ok")
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, 50_000_000) + os.urandom(4)
        await client.send(header + b"only the first bytes of it")
        assert (await client.read_close()).code == 1009
        session = await served.finished()
        assert_disconnected_with(session, 1009)


@BOTH
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.PING])
async def test_an_unmasked_client_frame_closes_with_1002(
    ws: Any, opcode: Opcode
) -> None:
    async with serving(ws) as served:
        client = await open_on_short_path(served, "masked")
        await client.send(Frame(opcode, b"unmasked").serialize(mask=False))
        assert (await client.read_close()).code == 1002
        session = await served.finished()
        assert session.received() == [receive_text("masked")]
        assert_disconnected_with(session, 1002)


@BOTH
async def test_a_frame_with_a_reserved_bit_closes_with_1002(ws: Any) -> None:
    async with serving(ws) as served:
        client = await open_on_short_path(served, "ok")
        frame = bytearray(client_text("rsv1"))
        frame[0] |= 0x40  # RSV1 with no extension negotiated
        await client.send(bytes(frame))
        assert (await client.read_close()).code == 1002
        session = await served.finished()
        assert session.received() == [receive_text("ok")]


# ------------------------------------------------------------------------ closing


@BOTH
async def test_client_close_code_reaches_the_app(ws: Any) -> None:
    async with serving(ws) as served, connect(served.url(), compression=None) as client:
        await echo_round(client, "hello")
        await client.close(4001, "done here")
        assert client.close_code == 4001  # echoed by the server
        session = await served.finished()
        assert session.events[-1] == {
            "type": "websocket.disconnect",
            "code": 4001,
            "reason": "done here",
        }


@BOTH
async def test_app_close_code_reaches_the_client(ws: Any) -> None:
    async with serving(ws) as served, connect(served.url(), compression=None) as client:
        await echo_round(client, "hello")
        await client.send("cmd:close:1008")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "bye")
        session = await served.finished()
        assert session.events[-2:] == [
            {"type": "websocket.disconnect", "code": 1008, "reason": "bye"},
            {"type": "websocket.disconnect", "code": 1005},
        ]


@BOTH
async def test_texts_after_the_apps_close_are_not_delivered(ws: Any) -> None:
    async with serving(ws) as served:
        client = await served.open_raw()
        await client.send(client_text("cmd:close:4100"))
        frame = await client.read_frame()
        assert frame.opcode is Opcode.CLOSE
        assert Close.parse(frame.data).code == 4100
        await client.send(
            client_text("late 1"), client_text("late 2"), client_close(4100)
        )
        assert await client.at_eof()
        session = await served.finished()
        assert session.received() == [receive_text("cmd:close:4100")]
        assert session.events[-2:] == [
            {"type": "websocket.disconnect", "code": 4100, "reason": "bye"},
            {"type": "websocket.disconnect", "code": 1005},
        ]


@BOTH
async def test_sending_after_the_client_dropped_raises(ws: Any) -> None:
    async with serving(ws) as served:
        client = await served.open_raw("/send-after-disconnect")
        await client.send(client_text("hello"))
        assert (await client.read_frame()).data == b"hello"
        if ws is FAST:
            assert short_path_on(served.connection())
        client.drop()  # no close frame
        session = await served.finished()
        assert session.events[-1]["type"] == "websocket.disconnect"
        assert isinstance(session.after_disconnect, ClientDisconnected)
        assert isinstance(session.after_disconnect, OSError)


@BOTH
async def test_sending_after_the_client_closed_raises(ws: Any) -> None:
    async with serving(ws) as served:
        url = served.url("/send-after-disconnect")
        async with connect(url, compression=None) as client:
            await echo_round(client, "hello")
        session = await served.finished()
        assert session.events[-1]["type"] == "websocket.disconnect"
        assert isinstance(session.after_disconnect, ClientDisconnected)


@BOTH
async def test_server_shutdown_closes_with_1012(ws: Any) -> None:
    async with serving(ws) as served:
        client = await served.open_raw("/send-after-disconnect")
        await client.send(client_text("hello"))
        assert (await client.read_frame()).data == b"hello"
        shutdown = asyncio.create_task(served.server.shutdown())  # uvicorn's own
        assert (await client.read_close()).code == 1012
        await asyncio.wait_for(shutdown, TIMEOUT)
        session = await served.finished()
        assert session.events[-1] == {"type": "websocket.disconnect", "code": 1012}
        assert isinstance(session.after_disconnect, ClientDisconnected)


# ------------------------------------------------- where the short path is not taken


async def test_permessage_deflate_keeps_the_connection_on_websockets() -> None:
    async with (
        serving() as served,
        connect(served.url(), compression="deflate") as client,
    ):
        assert client.protocol.extensions  # negotiated
        protocol = served.connection()
        assert protocol.conn.extensions
        assert not short_path_on(protocol)
        messages: list[str | bytes] = ["small", "abc" * 30000, b"\x01\x02" * 500, "end"]
        for message in messages:
            await echo_round(client, message)
        assert not short_path_on(protocol)
        assert served.session().received() == [
            receive_bytes(m) if isinstance(m, bytes) else receive_text(m)
            for m in messages
        ]


async def early_connection(
    served: Served,
) -> tuple[RawClient, WebSocketsSansIOProtocol]:
    """A client whose upgrade request the server took, and which the app has not
    accepted yet (until `served.app.release` is set)."""
    client = await served.open_raw("/accept-on-release", read_response=False)
    connections = served.server.server_state.connections
    await eventually(
        lambda: any(isinstance(c, WebSocketsSansIOProtocol) for c in connections)
    )
    protocol = served.connection()
    # The app took websocket.connect: whatever the queue holds next is a message.
    await eventually(lambda: len(served.app.sessions) == 1)
    await eventually(lambda: protocol.queue.empty())
    return client, protocol


async def test_frames_sent_before_the_accept_on_a_frame_boundary() -> None:
    async with serving() as served:
        client, protocol = await early_connection(served)
        await client.send(client_text("early"))
        await eventually(lambda: not protocol.queue.empty())  # websockets read it
        served.app.release.set()
        await client.read_response()
        assert short_path_on(protocol)
        assert (await client.read_frame()).data == b"early"
        await client.send(client_text("later"))
        assert (await client.read_frame()).data == b"later"
        assert served.session().received() == [
            receive_text("early"),
            receive_text("later"),
        ]


async def test_frames_sent_before_the_accept_ending_mid_frame() -> None:
    """websockets' parser holds half a frame at the accept: it keeps the connection."""
    async with serving() as served:
        client, protocol = await early_connection(served)
        half = client_text("second, in two parts")
        await client.send(client_text("early"), half[:7])
        await eventually(lambda: not protocol.queue.empty())
        served.app.release.set()
        await client.read_response()
        assert not short_path_on(protocol)
        await client.send(half[7:], client_text("third"))
        got = [(await client.read_frame()).data.decode() for _ in range(3)]
        assert got == ["early", "second, in two parts", "third"]
        assert served.session().received() == [
            receive_text(t) for t in ("early", "second, in two parts", "third")
        ]


# -------------------------------------------------- the same outcome as uvicorn's own


async def mixed_script(client: ClientConnection) -> list[str | bytes]:
    await client.send("one")
    await client.send(b"\x00two")
    await client.send(["thr", "ee"])
    await client.send("four")
    await client.send("cmd:burst:3")
    got = [await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(7)]
    await client.close(4001, "done")
    return got


async def test_a_mixed_sequence_gives_what_uvicorns_own_protocol_gives() -> None:
    runs = []
    for ws in (FAST, STOCK):
        async with serving(ws) as served:
            async with connect(served.url(), compression=None) as client:
                got = await mixed_script(client)
            runs.append((got, (await served.finished()).events))
    (fast_got, fast_events), (stock_got, stock_events) = runs
    assert (
        fast_got
        == stock_got
        == [
            "one",
            b"\x00two",
            "three",
            "four",
            "burst 0",
            "burst 1",
            "burst 2",
        ]
    )
    assert fast_events == stock_events
    assert fast_events == [
        {"type": "websocket.connect"},
        receive_text("one"),
        receive_bytes(b"\x00two"),
        receive_text("three"),
        receive_text("four"),
        receive_text("cmd:burst:3"),
        {"type": "websocket.disconnect", "code": 4001, "reason": "done"},
    ]


async def test_a_mixed_tcp_write_gives_what_uvicorns_own_protocol_gives() -> None:
    chunk = b"".join(
        [
            client_text("one"),
            client_frame(Opcode.BINARY, b"\x00two"),
            client_text("thr", fin=False),
            client_frame(Opcode.PING, b"p"),
            client_frame(Opcode.CONT, "ee"),
            client_text("four"),
        ]
    )
    runs = []
    for ws in (FAST, STOCK):
        async with serving(ws) as served:
            client = await served.open_raw()
            await client.send(chunk)
            frames = [await client.read_frame() for _ in range(5)]
            await client.send(client_close(4001, "done"))
            close = await client.read_close()
            session = await served.finished()
            runs.append(
                (
                    [(f.opcode, bytes(f.data)) for f in frames],
                    (close.code, close.reason),
                    session.events,
                )
            )
    assert runs[0] == runs[1]
    frames_seen, close_seen, events = runs[0]
    assert frames_seen == [
        (Opcode.PONG, b"p"),
        (Opcode.TEXT, b"one"),
        (Opcode.BINARY, b"\x00two"),
        (Opcode.TEXT, b"three"),
        (Opcode.TEXT, b"four"),
    ]
    assert close_seen == (4001, "done")
    assert events[1:] == [
        receive_text("one"),
        receive_bytes(b"\x00two"),
        receive_text("three"),
        receive_text("four"),
        {"type": "websocket.disconnect", "code": 4001, "reason": "done"},
    ]


# ------------------------------------------------------------------------ AsgiInbox


async def test_inbox_is_first_in_first_out() -> None:
    inbox = AsgiInbox(asyncio.get_running_loop())
    assert inbox.empty()
    for item in range(5):
        inbox.put_nowait(item)
    assert not inbox.empty()
    assert [await inbox.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert inbox.empty()


async def test_a_waiting_getter_is_woken_by_a_put() -> None:
    inbox = AsgiInbox(asyncio.get_running_loop())
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0.01)
    assert not getter.done()  # nothing to take yet
    inbox.put_nowait("item")
    assert await asyncio.wait_for(getter, TIMEOUT) == "item"
    assert inbox.empty()


async def test_waiting_getters_are_served_in_order() -> None:
    inbox = AsgiInbox(asyncio.get_running_loop())
    getters = [asyncio.create_task(inbox.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in ("a", "b", "c"):
        inbox.put_nowait(item)
    assert await asyncio.wait_for(asyncio.gather(*getters), TIMEOUT) == ["a", "b", "c"]


async def test_a_woken_getter_that_is_cancelled_passes_the_item_on() -> None:
    inbox = AsgiInbox(asyncio.get_running_loop())
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)  # both wait
    inbox.put_nowait("only item")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, TIMEOUT) == "only item"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert inbox.empty()
    # Nothing left behind: the next put goes to the next getter.
    third = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("next")
    assert await asyncio.wait_for(third, TIMEOUT) == "next"


async def test_a_cancelled_waiting_getter_takes_nothing() -> None:
    inbox = AsgiInbox(asyncio.get_running_loop())
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    inbox.put_nowait("item")
    assert await asyncio.wait_for(second, TIMEOUT) == "item"
    assert first.cancelled()
    assert inbox.empty()
