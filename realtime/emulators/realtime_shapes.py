"""Payload shapes of the fake Realtime server's events, and the usage arithmetic.

Pure functions: no I/O, no state. Token counts follow PROTOCOL A8: input audio
is 1 token per 100 ms, output audio 1 token per 50 ms; text is estimated at 4
Latin characters or 1 Japanese character per token.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "assistant_item",
    "chunk_sizes",
    "rate_limits",
    "split_text",
    "text_tokens",
    "usage",
    "user_audio_item",
]


def text_tokens(text: str) -> int:
    """Estimate the tokens of ``text``."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return math.ceil(ascii_chars / 4) + (len(text) - ascii_chars)


def audio_tokens_in(ms: float) -> int:
    """Tokens of ``ms`` of input audio (1 per 100 ms)."""
    return math.ceil(ms / 100)


def audio_tokens_out(ms: float) -> int:
    """Tokens of ``ms`` of output audio (1 per 50 ms)."""
    return math.ceil(ms / 50)


def usage(
    *,
    input_text: int,
    input_audio: int,
    cached_text: int,
    cached_audio: int,
    output_text: int,
    output_audio: int,
) -> dict[str, Any]:
    """Return a ``response.done`` usage object."""
    input_tokens = input_text + input_audio
    output_tokens = output_text + output_audio
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "image_tokens": 0,
            "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": 0,
            },
        },
        "output_token_details": {
            "text_tokens": output_text,
            "audio_tokens": output_audio,
        },
    }


def rate_limits(response_index: int, tokens_used: int) -> list[dict[str, Any]]:
    """Return the ``rate_limits.updated`` list for a response."""
    return [
        {
            "name": "requests",
            "limit": 5000,
            "remaining": max(0, 4999 - response_index),
            "reset_seconds": 0.012,
        },
        {
            "name": "tokens",
            "limit": 40000,
            "remaining": max(0, 40000 - tokens_used),
            "reset_seconds": round(tokens_used * 60 / 40000, 3),
        },
    ]


_WORD_BOUNDARY = re.compile(r"(?<=\s)(?=\S)")


def split_text(text: str) -> list[str]:
    """Split ``text`` into transcript deltas that join back to it.

    Words (with their trailing space) for spaced text, 3 characters otherwise.
    """
    if not text:
        return []
    if any(c.isspace() for c in text):
        return [piece for piece in _WORD_BOUNDARY.split(text) if piece]
    return [text[i : i + 3] for i in range(0, len(text), 3)]


def chunk_sizes(total: int, sizes: tuple[int, ...], scale: int = 1) -> list[int]:
    """Cut ``total`` bytes into chunks cycling through ``sizes`` × ``scale``."""
    cuts: list[int] = []
    remaining, index = total, 0
    while remaining > 0:
        size = min(remaining, max(1, sizes[index % len(sizes)] * scale))
        cuts.append(size)
        remaining -= size
        index += 1
    return cuts


def user_audio_item(item_id: str, transcript: str | None) -> dict[str, Any]:
    """Return a committed user audio item, as conversation.item.* carry it."""
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def assistant_item(
    item_id: str, status: str, *, audio: bool, text: str | None
) -> dict[str, Any]:
    """Return an assistant message item (no audio bytes, ever).

    ``text=None`` gives the empty content of ``output_item.added``.
    """
    content: list[dict[str, Any]] = []
    if text is not None:
        if audio:
            content.append({"type": "output_audio", "transcript": text})
        else:
            content.append({"type": "output_text", "text": text})
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": status,
        "role": "assistant",
        "content": content,
    }
