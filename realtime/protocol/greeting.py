"""The instant greeting's pure parts (F-73): cached audio, recording, cutting.

A call whose greeting audio is cached plays it to the caller the moment the
stream starts, before the model socket is up. ``BridgeState`` does the
bookkeeping through three seams that use this module:

- **Play**: ``CachedGreeting.chunks_b64`` is the audio, cut once (when the
  cache entry is loaded) into base64 media payloads: the first 40 ms (its mark
  tells when playback began), then 1 s each, a mark after every chunk. Twilio
  takes media of any length; few messages keep the start cheap when many calls
  start at once, and between echoed marks the heard position runs on at the
  playback rate as for live audio. The item is tracked like any AI item under
  ``GREETING_ITEM_ID``, so echoed marks say how much of it was heard.
- **Tell the model**: once the session is confirmed, the text goes in as an
  assistant message with that id (``conversation.item.create``; assistant
  *audio* cannot be created, PROTOCOL A3) and no ``response.create``: the
  model knows the greeting was said, so it neither repeats it nor waits.
- **Cut**: an assistant item without audio cannot be truncated (the server
  holds 0 ms of it, PROTOCOL A6), so a barge-in replaces it: the heard part of
  the text (``heard_text``, in proportion to the bytes heard) goes in right
  after it under ``CUT_ITEM_ID``, then the original is deleted; nothing heard,
  it is only deleted.

``GreetingRecorder`` collects the audio of a live greeting response (the first
call after a change), so the bridge can fill the cache from it: it yields a
``GreetingSpoken`` only for a completed response of one uncut audio item.
"""

from __future__ import annotations

import binascii
import itertools
from dataclasses import dataclass, field
from typing import Final

from realtime.protocol.caller_audio import MULAW_8K

__all__ = [
    "CHUNK_MS",
    "CUT_ITEM_ID",
    "FIRST_CHUNK_MS",
    "GREETING_ITEM_ID",
    "MAX_GREETING_BYTES",
    "MAX_GREETING_CHARS",
    "CachedGreeting",
    "GreetingRecorder",
    "GreetingSpoken",
    "heard_text",
]

# Client-chosen item ids (≤ 32 characters); one greeting per conversation.
GREETING_ITEM_ID: Final = "item_cached_greeting"
CUT_ITEM_ID: Final = "item_cached_greeting_heard"
FIRST_CHUNK_MS: Final = 40  # a mark after it tells when playback began
CHUNK_MS: Final = 1000  # then a mark after each second
# Longer is not a greeting (and the recorder holds no more of a response that runs
# on, such as a fake's never-ending echo response).
MAX_GREETING_BYTES: Final = 20 * 1000 * MULAW_8K.bytes_per_ms  # 20 s of μ-law
MAX_GREETING_CHARS: Final = 4_000


@dataclass(frozen=True, slots=True)
class CachedGreeting:
    """A greeting's μ-law audio and what it says, ready to play."""

    text: str
    audio: bytes
    chunks_b64: tuple[str, ...] = field(repr=False)
    chunk_sizes: tuple[int, ...] = field(repr=False)

    @classmethod
    def from_audio(cls, text: str, audio: bytes) -> CachedGreeting:
        """Cut ``audio`` (μ-law 8 kHz) into the media payloads sent at start."""
        if not audio:
            raise ValueError("a cached greeting needs audio")
        if len(audio) > MAX_GREETING_BYTES:
            raise ValueError(f"greeting audio of {len(audio)} bytes is too long")
        if not text.strip() or len(text) > MAX_GREETING_CHARS:
            raise ValueError("a cached greeting needs a text of sensible length")
        per_ms = MULAW_8K.bytes_per_ms
        bounds = [0, min(len(audio), FIRST_CHUNK_MS * per_ms)]
        while bounds[-1] < len(audio):
            bounds.append(min(len(audio), bounds[-1] + CHUNK_MS * per_ms))
        pieces = [audio[a:b] for a, b in itertools.pairwise(bounds)]
        return cls(
            text=text,
            audio=audio,
            chunks_b64=tuple(
                binascii.b2a_base64(p, newline=False).decode("ascii") for p in pieces
            ),
            chunk_sizes=tuple(len(p) for p in pieces),
        )

    @property
    def duration_ms(self) -> int:
        """How long it plays."""
        return len(self.audio) // MULAW_8K.bytes_per_ms


@dataclass(frozen=True, slots=True)
class GreetingSpoken:
    """A live greeting finished uncut: its audio can fill the cache."""

    text: str
    audio: bytes


def heard_text(text: str, heard_bytes: int, total_bytes: int) -> str:
    """The part of ``text`` heard after ``heard_bytes`` of ``total_bytes``.

    Speech runs at a roughly even pace per character (Japanese especially), so
    the share of characters follows the share of audio, as the server's own
    truncate drops the unheard transcript.
    """
    if total_bytes <= 0 or heard_bytes <= 0:
        return ""
    if heard_bytes >= total_bytes:
        return text
    return text[: round(len(text) * heard_bytes / total_bytes)]


class GreetingRecorder:
    """The audio of one live greeting response, as its deltas arrive."""

    __slots__ = ("_audio", "_items", "overflow", "response_id")

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self._audio = bytearray()
        self._items: set[str] = set()
        self.overflow = False

    def add(self, response_id: str, item_id: str, data: bytes) -> None:
        """Keep one audio delta of the greeting response."""
        if response_id != self.response_id or self.overflow:
            return
        self._items.add(item_id)
        if len(self._audio) + len(data) > MAX_GREETING_BYTES:
            self.overflow = True
            self._audio.clear()
            return
        self._audio += data

    def result(
        self, *, status: str, transcript: str | None, cut: bool
    ) -> GreetingSpoken | None:
        """The greeting to cache once its response is done, or None when it is
        not one whole, uncut audio item with a transcript."""
        if (
            status != "completed"
            or cut
            or self.overflow
            or len(self._items) != 1
            or not self._audio
            or transcript is None
            or not transcript.strip()
            or len(transcript) > MAX_GREETING_CHARS
        ):
            return None
        return GreetingSpoken(transcript, bytes(self._audio))

    @property
    def item_id(self) -> str | None:
        """The audio item of the response, when it has exactly one."""
        return next(iter(self._items)) if len(self._items) == 1 else None
