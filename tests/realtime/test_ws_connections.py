"""websockets' connections with the short path for whole text frames, over real
loopback sockets: the messages, their order, and everything websockets does (pings,
close, flow control, refusals) exactly as without the short path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from websockets.frames import Frame, Opcode

from realtime.ws_connections import (
    ShortPathClientConnection,
    ShortPathServerConnection,
)
from realtime.ws_frames import text_frame
from realtime.ws_send import send_text

Handler = Callable[[ServerConnection], Awaitable[None]]
Pair = tuple[ShortPathClientConnection, ShortPathServerConnection]


@contextlib.asynccontextmanager
async def linked(
    handler: Handler | None = None,
    compression: str | None = None,
    **client_options: Any,
) -> AsyncIterator[Pair]:
    """A short-path client and its short-path server connection.

    The server runs `handler` if given, then stays open until the client closes.
    """
    accepted: asyncio.Future[ShortPathServerConnection] = (
        asyncio.get_running_loop().create_future()
    )

    async def handle(ws: ServerConnection) -> None:
        assert isinstance(ws, ShortPathServerConnection)
        accepted.set_result(ws)
        if handler is not None:
            await handler(ws)
        await ws.wait_closed()

    async with serve(
        handle,
        "127.0.0.1",
        0,
        compression=compression,
        create_connection=ShortPathServerConnection,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}",
            compression=compression,
            create_connection=ShortPathClientConnection,
            **client_options,
        ) as client:
            assert isinstance(client, ShortPathClientConnection)
            yield client, await asyncio.wait_for(accepted, 2)


async def recv(connection: Any, decode: bool | None = None) -> Any:
    return await asyncio.wait_for(connection.recv(decode), 2)


async def on_short_path(client: Any, server: Any) -> None:
    """One message each way: both sides take the short path."""
    await server.send("hello client")
    assert await recv(client) == "hello client"
    await client.send("hello server")
    assert await recv(server) == "hello server"
    assert client._frames is not None
    assert server._frames is not None


def count_parser_feeds(connection: Any) -> list[bytes]:
    """Every chunk websockets' own parser is given from now on."""
    fed: list[bytes] = []
    receive_data = connection.protocol.receive_data

    def spy(data: bytes) -> None:
        fed.append(bytes(data))
        receive_data(data)

    connection.protocol.receive_data = spy
    return fed


async def send_all(connection: Any, messages: list[str]) -> None:
    """Every other message through `send_text` (frames written directly)."""
    for i, message in enumerate(messages):
        if i % 2:
            await connection.send(message)
        else:
            await send_text(connection, message)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` for up to two seconds."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met within 2 s")


# ------------------------------------------------------------------ messages


async def test_many_texts_both_ways_whole_in_order_on_the_short_path() -> None:
    messages = [f'{{"seq":{i},"pad":"{"é" * (i % 7)}"}}' for i in range(300)]
    messages += ["", "日本語", "x" * 125, "y" * 126, "z" * 65535, "w" * 70000]
    async with linked() as (client, server):
        await on_short_path(client, server)
        client_fed = count_parser_feeds(client)
        server_fed = count_parser_feeds(server)
        await send_all(server, messages)
        got = [await recv(client) for _ in messages]
        assert got == messages
        await send_all(client, messages)
        got = [await recv(server) for _ in messages]
        assert got == messages
        # None of it went through websockets' parser: the short path took it all.
        assert client_fed == []
        assert server_fed == []
        assert client._frames is not None
        assert server._frames is not None


async def test_messages_sent_on_accept_arrive_in_order() -> None:
    async def burst(ws: ServerConnection) -> None:
        for i in range(50):
            await ws.send(f"early {i}")
        async for message in ws:
            assert message == "more"
            for i in range(50):
                await ws.send(f"late {i}")

    async with linked(burst) as (client, _server):
        await asyncio.sleep(0.1)  # the burst arrives before anyone reads
        assert [await recv(client) for _ in range(50)] == [
            f"early {i}" for i in range(50)
        ]
        await client.send("more")
        assert [await recv(client) for _ in range(50)] == [
            f"late {i}" for i in range(50)
        ]
        assert client._frames is not None


async def test_a_recv_begun_before_the_short_path_gets_the_next_messages() -> None:
    async with linked() as (client, server):
        assert client._frames is None  # nothing received since the handshake
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await server.send("one")
        await server.send("two")
        assert await asyncio.wait_for(waiting, 2) == "one"
        assert await recv(client) == "two"
        assert client._frames is not None


async def test_a_recv_waiting_on_the_short_path_gets_a_message_for_websockets() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        await server.send(b"\x00binary")
        assert await asyncio.wait_for(waiting, 2) == b"\x00binary"


async def test_a_fragmented_message_arrives_whole_and_ends_the_short_path() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("a")
        await server.send("b")
        await server.send(iter(["frag-1 ", "日本", " frag-3"]))
        await server.send("c")
        await send_text(server, "d")
        got = [await recv(client) for _ in range(5)]
        assert got == ["a", "b", "frag-1 日本 frag-3", "c", "d"]
        assert client._frames is None


def send_held_fragments(
    server: ServerConnection, first: str, second: str
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """Start sending a message in two fragments; the second waits for the gate."""
    gate = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield first
        await gate.wait()
        yield second

    return gate, asyncio.create_task(server.send(fragments()))


async def test_a_fragmented_message_sent_slowly_arrives_whole() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        gate, sending = send_held_fragments(server, "first half, ", "second half")
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # half a message is no message
        gate.set()
        await asyncio.wait_for(sending, 2)
        await server.send("after")
        assert await asyncio.wait_for(waiting, 2) == "first half, second half"
        assert await recv(client) == "after"


async def test_texts_queued_before_a_fragmented_message_keep_their_order() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        for i in range(5):
            await server.send(f"before {i}")
        await server.send(iter(["x", "y"]))
        for i in range(5):
            await server.send(f"after {i}")
        await asyncio.sleep(0.1)  # all of it arrives before anyone reads
        got = [await recv(client) for _ in range(11)]
        assert got == [
            *(f"before {i}" for i in range(5)),
            "xy",
            *(f"after {i}" for i in range(5)),
        ]


async def test_binary_arrives_as_bytes_and_ends_the_short_path() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("text before")
        await server.send(b"\x00\xff binary")
        await server.send("text after")
        assert await recv(client) == "text before"
        assert await recv(client) == b"\x00\xff binary"
        assert await recv(client) == "text after"
        assert client._frames is None


async def test_recv_decode_overrides() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("héllo")
        await server.send("héllo")
        got = await recv(client, decode=False)
        assert got == "héllo".encode() and type(got) is bytes
        got = await recv(client, decode=True)
        assert got == "héllo" and type(got) is str
        assert client._frames is not None
        await server.send(b"plain", text=False)
        assert await recv(client, decode=True) == "plain"


async def test_recv_streaming_yields_the_whole_message() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("streamed")
        await server.send("bytes please")
        pieces = [p async for p in client.recv_streaming()]
        assert pieces == ["streamed"]
        pieces = [p async for p in client.recv_streaming(decode=False)]
        assert pieces == [b"bytes please"]
        await server.send(iter(["a", "b", "c"]))
        pieces = [p async for p in client.recv_streaming()]
        assert "".join(pieces) == "abc"


# ------------------------------------------------------------ control frames


async def test_ping_and_pong_on_the_short_path() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        latency = await asyncio.wait_for(await client.ping(b"from client"), 2)
        assert latency >= 0
        latency = await asyncio.wait_for(await server.ping(b"from server"), 2)
        assert latency >= 0
        # Pings are websockets' business: the short path goes on after them.
        assert client._frames is not None
        assert server._frames is not None
        await server.send("still here")
        assert await recv(client) == "still here"
        await client.send("me too")
        assert await recv(server) == "me too"


async def test_ping_between_queued_texts() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("one")
        pong = await server.ping()
        await server.send("two")
        await asyncio.wait_for(pong, 2)  # answered though the texts are unread
        assert [await recv(client), await recv(client)] == ["one", "two"]


# --------------------------------------------------------------------- close


async def test_client_closes_server_loop_ends_cleanly() -> None:
    received: list[str] = []
    ended = asyncio.Event()

    async def collect(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(str(message))
            if message == "first":
                await ws.send("ack")
        ended.set()  # no exception: a normal end

    async with linked(collect) as (client, server):
        await client.send("first")
        assert await recv(client) == "ack"
        assert server._frames is not None
        for i in range(10):
            await send_text(client, f"m{i}")
        await client.close()
        await asyncio.wait_for(ended.wait(), 2)
        assert received == ["first", *(f"m{i}" for i in range(10))]
        with pytest.raises(ConnectionClosedOK):
            await recv(server)
        with pytest.raises(ConnectionClosedOK):
            await recv(client)
        assert server.close_code == 1000


async def test_server_closes_client_loop_ends_cleanly() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        for i in range(10):
            await server.send(f"m{i}")
        await server.close()
        got = [m async for m in client]  # ends without an exception
        assert got == [f"m{i}" for i in range(10)]
        with pytest.raises(ConnectionClosedOK):
            await recv(client)
        assert client.close_code == 1000


async def test_close_while_a_recv_waits() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        await server.close()
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(waiting, 2)


async def test_a_dropped_tcp_connection_is_an_error_after_the_texts() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        await server.send("last words")
        server.transport.close()  # no closing handshake
        assert await recv(client) == "last words"
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.rcvd is None


async def test_an_aborted_tcp_connection_ends_a_waiting_recv_with_an_error() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        server.transport.abort()
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(waiting, 2)
        with pytest.raises(ConnectionClosedError):
            await recv(client)


# --------------------------------------------------------------- concurrency


async def test_two_concurrent_recv_raise_concurrency_error() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        first = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        with pytest.raises(ConcurrencyError):
            await recv(client)
        await server.send("for the first")
        assert await asyncio.wait_for(first, 2) == "for the first"


async def test_two_concurrent_recv_before_the_short_path() -> None:
    async with linked() as (client, server):
        first = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        with pytest.raises(ConcurrencyError):
            await recv(client)
        await server.send("for the first")
        assert await asyncio.wait_for(first, 2) == "for the first"


async def test_second_recv_while_the_first_waits_for_the_rest_of_a_fragmented_message() -> (
    None
):
    # websockets raises ConcurrencyError here (a recv is in progress); the second
    # recv must not wait and take the message after the fragmented one.
    async with linked() as (client, server):
        await on_short_path(client, server)
        gate, sending = send_held_fragments(server, "one ", "two")
        first = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        second = asyncio.create_task(client.recv())
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.wait_for(sending, 2)
        await server.send("three")
        assert await asyncio.wait_for(first, 2) == "one two"
        with pytest.raises(ConcurrencyError):
            await asyncio.wait_for(second, 2)


async def test_a_cancelled_recv_loses_nothing() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.recv(), 0.05)
        await server.send("kept")
        assert await recv(client) == "kept"


# -------------------------------------------------------------- flow control


async def test_a_client_that_does_not_read_pauses_reading_then_gets_everything() -> (
    None
):
    count = 200
    messages = [f"{i:05d}" + "p" * 2000 for i in range(count)]  # ~400 KB
    async with linked(max_queue=(16, 4)) as (client, server):
        await on_short_path(client, server)
        # In a task: with reading paused, the sender may have to wait for room.
        sending = asyncio.create_task(send_all(server, messages))
        await wait_until(lambda: client._reading_paused)
        assert not client.transport.is_reading()
        queued = len(client._texts)
        assert 16 < queued < count  # stopped before all of it was read
        await asyncio.sleep(0.1)
        assert len(client._texts) == queued  # and stays stopped
        # Still paused down to the low-water mark, resumed at it. (recv() awaited
        # directly returns a queued text without yielding to the loop, which could
        # read more as soon as reading resumes.)
        got = []
        while len(client._texts) > 5:
            got.append(await client.recv())
        assert not client.transport.is_reading()
        got.append(await client.recv())
        assert len(client._texts) == 4
        assert client.transport.is_reading()
        assert not client._reading_paused
        while len(got) < count:
            got.append(await recv(client))
        assert got == messages
        await asyncio.wait_for(sending, 2)
        assert client.transport.is_reading()
        assert client._frames is not None


async def test_the_server_side_pauses_reading_too() -> None:
    count = 200
    messages = [f"{i:05d}" + "q" * 2000 for i in range(count)]
    async with linked() as (client, server):
        await on_short_path(client, server)
        sending = asyncio.create_task(send_all(client, messages))
        await wait_until(lambda: server._reading_paused)
        assert not server.transport.is_reading()
        got = [await recv(server) for _ in range(count)]
        assert got == messages
        await asyncio.wait_for(sending, 2)
        assert server.transport.is_reading()


async def test_flow_control_without_limit_never_pauses() -> None:
    async with linked(max_queue=None) as (client, server):
        await on_short_path(client, server)
        for i in range(100):
            await server.send(f"{i}")
        await wait_until(lambda: len(client._texts) == 100)
        assert not client._reading_paused
        assert client.transport.is_reading()
        assert [await recv(client) for _ in range(100)] == [f"{i}" for i in range(100)]


async def test_reading_stays_paused_while_websockets_queue_is_full() -> None:
    # 20 texts on the short path, a binary message (websockets takes the rest), then
    # 20 more texts that land in websockets' own queue, all in one read. Reading
    # the first 16 texts empties the short path's queue below its low-water mark,
    # but websockets' queue still holds 21 messages: reading must stay paused, as
    # websockets would keep it with all 41 in its queue.
    async with linked() as (client, server):
        await on_short_path(client, server)
        blob = b"".join(text_frame(f"a{i}".encode(), masked=False) for i in range(20))
        blob += Frame(Opcode.BINARY, b"bin").serialize(mask=False)
        blob += b"".join(text_frame(f"b{i}".encode(), masked=False) for i in range(20))
        client.data_received(blob)  # what the transport does with one read
        assert not client.transport.is_reading()
        got = [await recv(client) for _ in range(16)]
        assert got == [f"a{i}" for i in range(16)]
        assert len(client.recv_messages.frames) == 21
        assert not client.transport.is_reading()
        got += [await recv(client) for _ in range(25)]
        assert got == [
            *(f"a{i}" for i in range(20)),
            b"bin",
            *(f"b{i}" for i in range(20)),
        ]
        assert client.transport.is_reading()


# ------------------------------------------------------------------ refusals


async def test_invalid_utf8_from_the_server_closes_with_1007() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        server.transport.write(
            text_frame(b"fine", masked=False) + bytes([0x81, 2, 0xFF, 0xFE])
        )
        assert await recv(client) == "fine"
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.sent is not None and closed.value.sent.code == 1007
        await asyncio.wait_for(server.wait_closed(), 2)
        assert server.close_code == 1007
        assert client._frames is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(text_frame(b"\xc3\x28", masked=True), 1007, id="invalid-utf8"),
        pytest.param(text_frame(b"unmasked", masked=False), 1002, id="unmasked"),
    ],
)
async def test_a_bad_frame_from_the_client_closes_the_connection(
    raw: bytes, code: int
) -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        client.transport.write(raw)
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(server)
        assert closed.value.sent is not None and closed.value.sent.code == code
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_a_masked_frame_from_the_server_is_a_protocol_error() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        server.transport.write(text_frame(b"masked", masked=True))
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.sent is not None and closed.value.sent.code == 1002


async def test_a_message_over_max_size_closes_with_1009() -> None:
    async with linked(max_size=1000) as (client, server):
        await on_short_path(client, server)
        await server.send("a" * 1000)
        assert await recv(client) == "a" * 1000
        await server.send("b" * 1001)
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.sent is not None and closed.value.sent.code == 1009
        assert client._frames is None


async def test_websockets_queue_stays_bounded_after_a_hand_over_with_texts_queued() -> (
    None
):
    # The consequence of the early resume above: websockets' queue believes reading
    # is still paused, so it never pauses it again, and with a reader slower than
    # the sender its queue grows without limit (max_queue is 16).
    async with linked() as (client, server):
        await on_short_path(client, server)
        blob = b"".join(text_frame(f"a{i}".encode(), masked=False) for i in range(20))
        blob += Frame(Opcode.BINARY, b"bin").serialize(mask=False)
        blob += b"".join(text_frame(f"b{i}".encode(), masked=False) for i in range(20))
        client.data_received(blob)
        for _ in range(16):
            await client.recv()
        for i in range(500):
            await server.send(f"c{i}")
        await asyncio.sleep(0.2)
        assert len(client.recv_messages.frames) <= 21


# ------------------------------------------------------ where it is not taken


async def test_with_compression_there_is_no_short_path() -> None:
    async with linked(compression="deflate") as (client, server):
        assert client.protocol.extensions  # permessage-deflate negotiated
        for i in range(20):
            await server.send(f"compressed {i}" * 10)
            await client.send(f"compressed {i}" * 10)
        assert [await recv(client) for _ in range(20)] == [
            f"compressed {i}" * 10 for i in range(20)
        ]
        assert [await recv(server) for _ in range(20)] == [
            f"compressed {i}" * 10 for i in range(20)
        ]
        assert client._frames is None
        assert server._frames is None


async def test_with_a_fragment_size_limit_there_is_no_short_path() -> None:
    async with linked(max_size=(10000, 100)) as (client, server):
        await server.send("x" * 100)
        assert await recv(client) == "x" * 100
        await server.send("y")
        assert await recv(client) == "y"
        assert client._frames is None
        await server.send("z" * 101)  # over the fragment limit: websockets refuses
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.sent is not None and closed.value.sent.code == 1009


async def test_a_frame_split_across_the_start_of_the_short_path() -> None:
    async with linked() as (client, server):
        assert client._frames is None
        first = text_frame(b"split frame", masked=False)
        # Half a frame that came in with the handshake response, parsed by websockets.
        Connection.data_received(client, first[:4])
        client.data_received(first[4:7])  # its parser is inside a frame: not yet
        assert client._frames is None
        client.data_received(
            first[7:]
            + b"".join(text_frame(b"next %d" % i, masked=False) for i in range(3))
        )
        assert client._frames is None  # websockets has messages queued
        await server.send("later")
        got = [await recv(client) for _ in range(5)]
        assert got == ["split frame", "next 0", "next 1", "next 2", "later"]
        await server.send("short")
        assert await recv(client) == "short"
        assert client._frames is not None


async def test_keepalive_pings_on_the_short_path() -> None:
    async with linked(ping_interval=0.05, ping_timeout=0.5) as (client, server):
        await on_short_path(client, server)
        for i in range(20):
            await server.send(f"tick {i}")
            await asyncio.sleep(0.02)
        assert [await recv(client) for _ in range(20)] == [
            f"tick {i}" for i in range(20)
        ]
        assert client.latency > 0  # the keepalive pongs were seen
        assert client.state.name == "OPEN"
        assert client._frames is not None


async def test_a_reserved_opcode_is_a_protocol_error() -> None:
    async with linked() as (client, server):
        await on_short_path(client, server)
        server.transport.write(text_frame(b"ok", masked=False) + bytes([0x83, 0]))
        assert await recv(client) == "ok"
        with pytest.raises(ConnectionClosedError) as closed:
            await recv(client)
        assert closed.value.sent is not None and closed.value.sent.code == 1002
