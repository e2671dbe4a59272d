"""The greeting audio cache (F-73): μ-law greetings on disk, shared by processes.

An entry is the audio the model spoke for one greeting and its transcript, keyed by
``greeting_key`` — a hash of the agent profile's id, voice, speed, model, the audio
format and the rendered greeting text. A profile change that alters what is said or
how (template, variables, voice, model) gives a new key: the first call after it
misses, speaks the greeting live and fills the cache; the old entry ages out.

Storage: one file per key under the cache folder, written atomically (a temporary
file in the same folder, fsynced, then ``os.replace``), so every server process on
the machine shares it and none ever reads half a file. A file is::

    MAGIC (8 bytes) | text length (4, big-endian) | audio length (4) |
    SHA-256 of text + audio (32) | UTF-8 text | μ-law audio

A file that is missing, short, of another format or whose checksum fails is a miss
(a corrupt one is removed and logged), so the call speaks the greeting live and the
next call finds a good entry again.

Bounded: at most ``size`` entries, least recently used first out — in memory (the
entries this process has played, already cut into media payloads) and on disk (a
hit touches the file's mtime; a write prunes the oldest files beyond ``size``).
``size`` 0 turns the cache off. No Django here: settings arrive as arguments.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from realtime.protocol.greeting import (
    MAX_GREETING_BYTES,
    MAX_GREETING_CHARS,
    CachedGreeting,
)

__all__ = ["FILE_SUFFIX", "GreetingCache", "greeting_cache_for", "greeting_key"]

log = logging.getLogger(__name__)

MAGIC: Final = b"CCGREET1"
HEADER: Final = struct.Struct(">8sII32s")
FILE_SUFFIX: Final = ".greeting"
KEY_VERSION: Final = 1


def greeting_key(
    *,
    profile_id: int,
    voice: str,
    speed: float,
    model: str,
    audio_format: str,
    text: str,
) -> str:
    """The cache key of a rendered greeting for a profile, voice and model."""
    material = json.dumps(
        [KEY_VERSION, profile_id, voice, speed, model, audio_format, text],
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _encode(text: str, audio: bytes) -> bytes:
    body = text.encode("utf-8")
    digest = hashlib.sha256(body + audio).digest()
    return HEADER.pack(MAGIC, len(body), len(audio), digest) + body + audio


class CorruptEntry(ValueError):
    """A cache file that is not a whole, valid entry."""


def _decode(data: bytes) -> CachedGreeting:
    if len(data) < HEADER.size:
        raise CorruptEntry(f"{len(data)} bytes, shorter than the header")
    magic, text_len, audio_len, digest = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry("not a greeting cache file")
    if HEADER.size + text_len + audio_len != len(data):
        raise CorruptEntry("lengths do not match the file size")
    if audio_len > MAX_GREETING_BYTES or text_len > 4 * MAX_GREETING_CHARS:
        raise CorruptEntry("entry too large")
    body = data[HEADER.size :]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptEntry("checksum mismatch")
    try:
        text = body[:text_len].decode("utf-8")
        return CachedGreeting.from_audio(text, body[text_len:])
    except ValueError as exc:
        raise CorruptEntry(str(exc)) from None


class GreetingCache:
    """A bounded LRU of greeting audio, on disk under ``directory``.

    Thread-safe: calls' configs are built on database threads, entries written
    from worker threads.
    """

    def __init__(self, directory: str | os.PathLike[str], size: int) -> None:
        if size < 0:
            raise ValueError("the greeting cache size cannot be negative")
        self.directory = Path(directory)
        self.size = size
        self._memory: OrderedDict[str, CachedGreeting] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    @property
    def enabled(self) -> bool:
        """Whether the cache keeps anything."""
        return self.size > 0

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a greeting cache key: {key!r}")
        return self.directory / f"{key}{FILE_SUFFIX}"

    def get(self, key: str) -> CachedGreeting | None:
        """The entry of ``key``, or None (missing, unreadable or corrupt)."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return entry
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._miss()
            return None
        except OSError as exc:
            log.warning("greeting cache: %s unreadable (%s)", path.name, exc)
            self._miss()
            return None
        try:
            entry = _decode(data)
        except CorruptEntry as exc:
            log.warning("greeting cache: %s is corrupt (%s); removed", path.name, exc)
            with self._lock:
                self.corrupt += 1
            with contextlib.suppress(OSError):
                path.unlink()
            self._miss()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used, for the pruning of every process
        with self._lock:
            self._remember(key, entry)
            self.hits += 1
        return entry

    def _miss(self) -> None:
        with self._lock:
            self.misses += 1
        return None

    def _remember(self, key: str, entry: CachedGreeting) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.size:
            self._memory.popitem(last=False)

    def put(self, key: str, text: str, audio: bytes) -> CachedGreeting | None:
        """Store a greeting (atomically); None when the cache is off.

        Raises ValueError for an entry no call could play (no audio, too long).
        """
        if not self.enabled:
            return None
        entry = CachedGreeting.from_audio(text, audio)
        path = self.path(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.directory, prefix=f".{key[:16]}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_encode(text, audio))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._remember(key, entry)
        self._prune()
        return entry

    def _prune(self) -> None:
        """Remove the least recently used files beyond ``size``."""
        try:
            files = [
                (entry.stat().st_mtime_ns, entry.path)
                for entry in os.scandir(self.directory)
                if entry.name.endswith(FILE_SUFFIX) and entry.is_file()
            ]
        except OSError:
            return
        if len(files) <= self.size:
            return
        files.sort()
        for _, path in files[: len(files) - self.size]:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def __len__(self) -> int:
        """Entries on disk."""
        try:
            return sum(
                1
                for entry in os.scandir(self.directory)
                if entry.name.endswith(FILE_SUFFIX)
            )
        except OSError:
            return 0


_caches: dict[tuple[str, int], GreetingCache] = {}
_caches_lock = threading.Lock()


def greeting_cache_for(directory: str | os.PathLike[str], size: int) -> GreetingCache:
    """The process's cache for a folder and size (one memory LRU per process)."""
    key = (str(Path(directory).resolve()), size)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = GreetingCache(directory, size)
        return cache
