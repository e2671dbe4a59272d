"""What the emulators' HTTP servers share: an ASGI app on an embedded uvicorn.

The Twilio emulator and the two fakes of OpenAI's Responses API (the legacy path's
text model, the after-call summaries) each serve a plain ASGI app on a free port of
the loop they are started on, and answer JSON. No Django here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["EmbeddedServer", "read_body", "send_json"]


class EmbeddedServer(uvicorn.Server):
    """uvicorn on the current loop, leaving signal handling to the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @classmethod
    async def start(
        cls, app: Any, *, host: str, port: int, what: str
    ) -> tuple[EmbeddedServer, asyncio.Task[None], int]:
        """Serve ``app`` on ``host:port`` (0: a free port); return the server, its
        task and the port it is bound to. ``what`` names it if it fails to start."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            timeout_graceful_shutdown=1,
        )
        server = cls(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # raise what stopped it
                raise RuntimeError(f"{what} exited on start")
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        return server, task, int(bound)

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Let the server finish and wait for it."""
        self.should_exit = True
        await task


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI http request."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    """Answer ``payload`` as JSON (UTF-8, non-ASCII kept) with ``status``."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
