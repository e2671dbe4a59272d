"""The webhook signature (F-77): `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

No Django here; docs/WEBHOOKS.md shows the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Callcenter-Signature` value."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"
