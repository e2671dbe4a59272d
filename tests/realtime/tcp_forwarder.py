"""A TCP forwarder for tests: one public port in front of server processes.

What a balancer does for these tests, in a few lines: every new connection goes to
`backend_port`; bytes are copied both ways. `switch(port)` marks the old backend down
as a proxy's health check would: new connections go to `port`, and the idle HTTP
keep-alive connections to the old one are closed (a client's next request then opens
a new connection), while its WebSocket streams stay until that backend ends them.
When the backend's side ends (its process killed) the client's side is closed with
nothing more, so a WebSocket client sees the connection break (1006), as it would
through a proxy in front of a dead process.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    backend_port: int
    websocket: bool
    half_open: bool = False  # cut on the client's side only


class TcpForwarder:
    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: set[_Link] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpForwarder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self.close_connections()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def switch(self, backend_port: int) -> None:
        """Send new connections to `backend_port`; close the old one's idle HTTP."""
        old, self.backend_port = self.backend_port, backend_port
        for link in list(self._links):
            if link.backend_port == old and not link.websocket:
                link.client.transport.abort()

    def cut_websockets_half_open(self) -> None:
        """Break every WebSocket on the client's side only: the client sees the
        connection break, the backend sees nothing (a half-open connection)."""
        for link in list(self._links):
            if link.websocket:
                link.half_open = True
                link.client.transport.abort()

    async def close_connections(self) -> None:
        """Drop every forwarded connection (the pipes then end on their own)."""
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        link: _Link | None = None
        try:
            first = await reader.read(65536)
            if not first:
                return
            port = self.backend_port
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.transport.abort()
                return
            link = _Link(writer, port, b"upgrade: websocket" in first.lower())
            self._links.add(link)
            self._writers.add(up_writer)
            up_writer.write(first)
            await asyncio.gather(
                self._pipe(reader, up_writer, link), self._pipe(up_reader, writer, link)
            )
            self._writers.discard(up_writer)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            if link is not None:
                self._links.discard(link)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await source.read(65536):
                if link.half_open:
                    continue  # what the backend sends goes nowhere
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not (link.half_open and sink is not link.client):
                with contextlib.suppress(Exception):
                    sink.close()
