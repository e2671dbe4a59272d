"""An HTTP tool's server on a loopback port, in a thread (tests of F-78).

It checks each request's signature with the recipe of docs/WEBHOOKS.md (the same
code block the webhook receiver runs), records what came and answers what the test
set: a status, a raw body and an optional delay.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.notifications.receiver import documented_verify


@dataclass
class ToolCall:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class ToolServer:
    secret: str
    status: int = 200
    reply: bytes = b'{"ok": true, "booking": "B-1"}'
    content_type: str = "application/json"
    delay_s: float = 0.0
    calls: list[ToolCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.verify = documented_verify()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/tool"

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = dict(handler.headers.items())
        signature = headers.get("X-Callcenter-Signature", "")
        verified = bool(signature) and self.verify(self.secret, signature, body)
        self.calls.append(ToolCall(handler.path, headers, body, verified))
        if self.delay_s:
            time.sleep(self.delay_s)
        try:
            handler.send_response(self.status)
            if 300 <= self.status < 400:
                handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
            handler.send_header("Content-Type", self.content_type)
            handler.send_header("Content-Length", str(len(self.reply)))
            handler.end_headers()
            handler.wfile.write(self.reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up (time-out)

    def start(self) -> ToolServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                owner.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
