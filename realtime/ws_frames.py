"""Whole WebSocket frames cut from a byte stream, for the short path of the audio sockets.

Both of a call's sockets carry one small JSON text frame per 20 ms each way. For
each, websockets' Sans-I/O parser runs a stack of generator coroutines, builds a
`Frame`, and hands it through event lists; py-spy put that at about a third of the
service's CPU on the audio path (bench/README.md). `FrameReader` does only the part
that cannot change any decision: it finds where each frame ends and, for a final
text frame with no reserved bits, returns its text. Every other frame comes back
whole and raw, for websockets to parse and decide on exactly as before (ping, pong,
close, binary, fragments), and anything websockets would refuse (too big, masked the
wrong way, invalid UTF-8) ends the short path so that websockets sees it and fails
the connection as it always does.

Pure: no I/O, no Django; websockets is used only for its C unmasking helper.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Generator
from typing import Any, Final

from websockets.speedups import apply_mask

FIN_TEXT: Final = 0x81  # FIN bit, no reserved bits, opcode 1 (text)
MASK_BIT: Final = 0x80
FIRST_CONTROL_OPCODE: Final = 0x8


class HandOver:
    """`FrameReader.read`'s answer when websockets must take the stream from here."""


HAND_OVER: Final = HandOver()


class FrameReader:
    """Cuts incoming bytes into whole frames.

    `masked` is True on a server (clients must mask every frame) and False on a
    client (servers must not). `max_size` is the largest payload accepted.
    """

    def __init__(self, *, masked: bool, max_size: int | None) -> None:
        self._masked = masked
        self._max_size = max_size
        self._data = b""
        self._position = 0
        # A frame longer than what has arrived collects here until it is whole.
        self._collecting: bytearray | None = None
        self._needed = 0

    def feed(self, data: bytes) -> None:
        if self._collecting is not None:
            self._collecting += data
            if len(self._collecting) < self._needed:
                return
            data = bytes(self._collecting)
            self._collecting = None
        elif self._position < len(self._data):
            data = self._data[self._position :] + data
        self._data = data
        self._position = 0

    def rest(self) -> bytes:
        """Every byte not read yet; the reader is empty afterwards."""
        if self._collecting is not None:
            rest = bytes(self._collecting)
            self._collecting = None
        else:
            rest = self._data[self._position :]
        self._data = b""
        self._position = 0
        return rest

    def read(self) -> str | bytes | HandOver | None:
        """The next whole frame.

        `str`: the text of a final text frame. `bytes`: any other frame, raw, for
        websockets. `None`: no whole frame buffered. `HAND_OVER`: websockets must
        read everything from here (`rest()`), for it will refuse what comes next.
        """
        data = self._data
        position = self._position
        available = len(data) - position
        if available < 2:
            self._wait(2)
            return None
        first = data[position]
        second = data[position + 1]
        length = second & 0x7F
        if length < 126:
            header_end = position + 2
        elif length == 126:
            if available < 4:
                self._wait(4)
                return None
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            header_end = position + 4
        else:
            if available < 10:
                self._wait(10)
                return None
            length = int.from_bytes(data[position + 2 : position + 10], "big")
            header_end = position + 10
        if bool(second & MASK_BIT) is not self._masked or (
            self._max_size is not None and length > self._max_size
        ):
            return HAND_OVER
        payload_start = header_end + 4 if self._masked else header_end
        frame_end = payload_start + length
        if frame_end > len(data):
            self._wait(frame_end - position)
            return None
        if first != FIN_TEXT:
            self._position = frame_end
            return data[position:frame_end]
        payload = data[payload_start:frame_end]
        if self._masked:
            payload = apply_mask(payload, data[header_end:payload_start])
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return HAND_OVER
        self._position = frame_end
        return text

    def _wait(self, needed: int) -> None:
        """Keep the incomplete frame at the read position until `needed` bytes are in."""
        if self._position:
            self._data = self._data[self._position :]
            self._position = 0
        if needed > len(self._data) + 4096:
            # A long frame: collect its chunks instead of re-joining them each time.
            self._collecting = bytearray(self._data)
            self._needed = needed
            self._data = b""
        return None


def read_frames(
    reader: FrameReader,
    on_text: Callable[[str], object],
    on_other: Callable[[bytes], bool],
) -> bool:
    """Hand on every whole frame buffered in `reader`, in order.

    Texts go to `on_text`; any other frame, raw, to `on_other`, which answers whether
    the short path goes on. False when it must end (`on_other` said so, or websockets
    must take the stream from here): the caller hands `reader.rest()` to websockets.
    """
    while (frame := reader.read()) is not None:
        if type(frame) is str:
            on_text(frame)
        elif frame is HAND_OVER or not on_other(frame):  # type: ignore[arg-type]
            return False
    return True


def text_frame(payload: bytes, *, masked: bool) -> bytes:
    """One final text frame carrying `payload`; masked with a random key if asked."""
    length = len(payload)
    second = MASK_BIT if masked else 0
    if length < 126:
        header = bytes((FIN_TEXT, second | length))
    elif length < 65536:
        header = struct.pack("!BBH", FIN_TEXT, second | 126, length)
    else:
        header = struct.pack("!BBQ", FIN_TEXT, second | 127, length)
    if not masked:
        return header + payload
    key = _mask_key()
    return header + key + apply_mask(payload, key)


# Masking keys come from the OS's random source, as websockets takes them, but 1024 at
# a time instead of one system call per frame.
_key_pool = b""
_key_at = 0


def _mask_key() -> bytes:
    global _key_pool, _key_at
    if _key_at >= len(_key_pool):
        _key_pool = os.urandom(4096)
        _key_at = 0
    key = _key_pool[_key_at : _key_at + 4]
    _key_at += 4
    return key


def _forget_keys() -> None:
    """A forked child must not reuse its parent's keys."""
    global _key_pool, _key_at
    _key_pool = b""
    _key_at = 0


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere nothing forks
    os.register_at_fork(after_in_child=_forget_keys)


def is_data_frame(frame: bytes) -> bool:
    """True for a text, binary or continuation frame (not ping, pong or close)."""
    return frame[0] & 0x0F < FIRST_CONTROL_OPCODE


def parser_at_frame_boundary(protocol: Any) -> bool:
    """True when websockets' parser has no bytes buffered and waits for a new frame."""
    if protocol.reader.buffer:
        return False
    coroutine: Generator[Any, Any, Any] | None = protocol.parser
    while coroutine is not None:
        inner = getattr(coroutine, "gi_yieldfrom", None)
        if inner is None:
            break
        coroutine = inner
    return getattr(coroutine, "__name__", "") == "at_eof"
