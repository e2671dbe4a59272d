"""A webhook receiver on a loopback port, in a thread (tests and bench/webhooks.py).

It checks each request's signature with the recipe of docs/WEBHOOKS.md (the code
block is read from the file and run), records what came, de-duplicates by event id,
and answers what the test scripted (a status per request, or "down": the connection
is dropped without an answer).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"


def documented_verify() -> Callable[..., bool]:
    """The `verify` function of docs/WEBHOOKS.md's Python block, exactly as written."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "docs/WEBHOOKS.md should hold one Python block"
    namespace: dict[str, Any] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    secret: str
    # Status to answer, per request in order; then `default_status`.
    script: list[int] = field(default_factory=list)
    default_status: int = 200
    delay_s: float = 0.0
    redirect_to: str = "/elsewhere"
    requests: list[Received] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verify = documented_verify()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k: v for k, v in handler.headers.items()}
        signature = headers.get("X-Callcenter-Signature", "")
        verified = bool(signature) and self.verify(self.secret, signature, body)
        with self.lock:
            self.requests.append(
                Received(handler.path, headers, body, verified, time.time())
            )
            status = self.script.pop(0) if self.script else self.default_status
            if 200 <= status < 300 and verified and handler.path == "/hook":
                event_id = json.loads(body)["id"]
                if event_id in self.seen_ids:
                    self.duplicates += 1
                else:
                    self.seen_ids.add(event_id)
                    self.first_seen[event_id] = time.time()
        if self.delay_s:
            time.sleep(self.delay_s)
        handler.send_response(status)
        if 300 <= status < 400:
            handler.send_header("Location", self.redirect_to)
        reply = json.dumps({"ok": 200 <= status < 300}).encode()
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def start(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
