"""Bytes of an uploaded CSV file to text, streamed, in the encoding it was saved in.

Pure: no Django. The file is never read whole: the first `DETECT_BYTES` decide the
encoding, then those bytes and the rest of the file pass, `READ_BYTES` at a time,
through a buffered reader and an incremental decoder (`io.TextIOWrapper`).

The encoding, decided from the first `DETECT_BYTES` bytes:
  1. a UTF-8 byte order mark → UTF-8 (the mark is dropped);
  2. a UTF-16 mark → refused (UndecodableFile): save the sheet as "CSV UTF-8" or "CSV";
  3. the leading chunk decodes as UTF-8 → UTF-8 (plain ASCII lands here too);
  4. it decodes as cp932 → Shift_JIS as Excel in Japan writes it (cp932 is
     Shift_JIS plus the NEC/IBM extensions: ①, ㈱, 髙 …);
  5. otherwise → UndecodableFile. Bytes further on that do not decode raise
     UnicodeDecodeError from the reader, where they are met.
"""

from __future__ import annotations

import codecs
import io
from typing import Any, BinaryIO

DETECT_BYTES = 64 * 1024
READ_BYTES = 64 * 1024


class UndecodableFile(ValueError):
    """The file is neither UTF-8 nor cp932 text (or is UTF-16)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class _HeadThenRest(io.RawIOBase):
    """The bytes already read for detection, then the rest of the file, in chunks."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), READ_BYTES)
        if self._head:
            chunk: bytes | memoryview = self._head[:want]
            self._head = self._head[len(chunk) :]
        else:
            chunk = self._rest.read(want)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _read_head(fileobj: BinaryIO) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < DETECT_BYTES:
        chunk = fileobj.read(DETECT_BYTES - size)
        if not chunk:
            break
        if isinstance(chunk, str):
            raise TypeError("contacts_import needs a binary file")
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _decodes(head: bytes, encoding: str, *, final: bool) -> bool:
    # Incremental: a multibyte character cut at the end of the chunk is not an error.
    try:
        codecs.getincrementaldecoder(encoding)().decode(head, final=final)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(head: bytes, *, complete: bool) -> str:
    """The codec for a file starting with `head` (see the module docstring)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UndecodableFile(
            "The file is UTF-16; save it as CSV in UTF-8 or Shift_JIS.",
            "UTF-16 is not supported.",
        )
    if _decodes(head, "utf-8", final=complete):
        return "utf-8"
    if _decodes(head, "cp932", final=complete):
        return "cp932"
    raise UndecodableFile(
        "The file is neither UTF-8 nor Shift_JIS text.",
        "Cannot decode the file as UTF-8 or Shift_JIS (cp932).",
    )


def open_text(fileobj: BinaryIO) -> tuple[io.TextIOWrapper, str]:
    """Wrap a binary file as decoded text without reading it whole."""
    head = _read_head(fileobj)
    encoding = detect_encoding(head, complete=len(head) < DETECT_BYTES)
    buffered = io.BufferedReader(_HeadThenRest(head, fileobj), buffer_size=READ_BYTES)
    return io.TextIOWrapper(buffered, encoding=encoding, newline=""), encoding
