"""The direct text-frame write: same frames as `Connection.send`, and it steps aside
whenever `send` would have to wait or raise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from realtime.ws_send import send_text, write_text_now

Received = asyncio.Queue[str | bytes]


@pytest.fixture
async def link() -> AsyncIterator[tuple[ClientConnection, Received]]:
    """A client socket and what its server has received, message by message."""
    received: Received = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await received.put(message)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            yield client, received


async def test_open_socket_gets_the_frame_at_once_as_text(
    link: tuple[ClientConnection, Received],
) -> None:
    client, received = link
    assert write_text_now(client, '{"type":"a"}') is True
    assert write_text_now(client, b'{"type":"b"}') is True
    assert write_text_now(client, "日本語") is True
    got = [await asyncio.wait_for(received.get(), 2) for _ in range(3)]
    # Text frames (str on the far side), in order, bytes unchanged.
    assert got == ['{"type":"a"}', '{"type":"b"}', "日本語"]


async def test_back_pressure_leaves_the_frame_to_send_which_waits(
    link: tuple[ClientConnection, Received],
) -> None:
    client, received = link
    client.pause_writing()  # what the transport does when its buffer is full
    assert write_text_now(client, "held") is False
    waiting = asyncio.create_task(send_text(client, "held"))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # send() waits for the buffer to drain
    client.resume_writing()
    await asyncio.wait_for(waiting, 2)
    assert await asyncio.wait_for(received.get(), 2) == "held"


async def test_closed_socket_is_not_written_and_send_text_raises(
    link: tuple[ClientConnection, Received],
) -> None:
    client, received = link
    await client.close()
    assert write_text_now(client, "late") is False
    with pytest.raises(ConnectionClosed):
        await send_text(client, "late")
    assert received.empty()


async def test_a_fragmented_send_in_progress_is_not_interleaved(
    link: tuple[ClientConnection, Received],
) -> None:
    client, received = link
    gate = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "frag-1 "
        await gate.wait()
        yield "frag-2"

    fragmented = asyncio.create_task(client.send(fragments()))
    await asyncio.sleep(0.05)
    # A frame now would land between the fragments and break the message.
    assert write_text_now(client, "other") is False
    after = asyncio.create_task(send_text(client, "other"))
    gate.set()
    await asyncio.wait_for(asyncio.gather(fragmented, after), 2)
    got = [await asyncio.wait_for(received.get(), 2) for _ in range(2)]
    assert got == ["frag-1 frag-2", "other"]
