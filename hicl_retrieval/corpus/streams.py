"""Opening corpus files as bytes: gzip and zstd by their magic bytes, damage reported, binary refused.

A truncated or corrupt compressed stream raises `CorruptStream` where the damage starts (the
readers keep every line before it and report the rest as one ``corrupt_file`` reject): gzip
says so itself; zstd's stream reader returns end-of-file inside an unfinished frame, so the
frames are decoded here and one that never ends is named. `sniff_text` tells a text file from a
binary one before a build starts, so random bytes are refused in one line instead of indexed as
garbage posts.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_READ = 1 << 17
SNIFF_BYTES = 1 << 16
# Bytes that text holds almost never (tab, line feed, form feed and carriage return excepted).
_CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 32), 127])


class CorruptStream(Exception):
    """The compressed content is damaged or cut short from here on."""


class _Guarded(io.RawIOBase):
    """A decompressing stream whose errors become `CorruptStream`."""

    def __init__(self, inner: BinaryIO, raw: BinaryIO) -> None:
        self.inner, self.raw = inner, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.inner.read1(len(buffer))  # not read(): it drops what it decoded before the damage
        except (EOFError, OSError, zlib.error) as exc:
            raise CorruptStream(str(exc) or type(exc).__name__) from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.raw.close()
            super().close()


class _Zstd(io.RawIOBase):
    """Every zstd frame of `raw` decompressed in turn; input that ends inside a frame is `CorruptStream`."""

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self.raw = raw
        self._zstd = zstandard
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = None  # the decompressobj of the frame under way, None between frames
        self._pending = b""

    def readable(self) -> bool:
        return True

    def _decode(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._frame is None:
                self._frame = self._decompressor.decompressobj()
            try:
                out.append(self._frame.decompress(data))
            except self._zstd.ZstdError as exc:
                raise CorruptStream(f"zstd: {exc}") from None
            if not self._frame.eof:
                break
            data, self._frame = self._frame.unused_data, None
        return b"".join(out)

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self.raw.read(_READ)
            if not chunk:
                if self._frame is not None:
                    raise CorruptStream("the zstd stream ends inside a frame (the file is truncated)")
                return 0
            self._pending = self._decode(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_binary(path: Path) -> BinaryIO:
    """`path` opened for reading bytes, decompressed when its magic bytes say gzip or zstd."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    head = raw.peek(4)[:4]
    if head.startswith(GZIP_MAGIC):
        return io.BufferedReader(_Guarded(gzip.GzipFile(fileobj=raw, mode="rb"), raw))  # type: ignore[arg-type]
    if head.startswith(ZSTD_MAGIC):
        return io.BufferedReader(_Zstd(raw))  # type: ignore[arg-type]
    return raw


def compressed_position(stream: BinaryIO) -> int:
    """Bytes of the file on disk that `stream` (from `open_binary`) has consumed so far."""
    raw = getattr(getattr(stream, "raw", None), "raw", stream)
    return raw.tell()


def read_sample(path: Path, size: int) -> tuple[bytes, int, bool]:
    """(up to `size` bytes of content, bytes of the file they came from, whether the content ended).

    Damage ends the sample early rather than raising: the readers report it in their turn.
    """
    pieces, total, ended = [], 0, False
    with open_binary(path) as stream:
        try:
            while total < size:
                piece = stream.read1(min(_READ, size - total))  # read() would drop what it had at damage
                if not piece:
                    ended = True
                    break
                pieces.append(piece)
                total += len(piece)
            if not ended:
                ended = not stream.peek(1)
        except CorruptStream:
            ended = True
        consumed = compressed_position(stream)
    return b"".join(pieces), consumed, ended


def sniff_text(path: Path) -> str | None:
    """Why the start of `path` is not UTF-8 text (binary, UTF-16, another encoding), or None if it is.

    A text corpus may hold a few bad lines (each becomes a reject); a file whose first bytes are
    largely control characters or invalid UTF-8 is not a corpus at all, and indexing it would
    only make garbage posts.
    """
    sample = read_sample(path, SNIFF_BYTES)[0]
    if not sample:
        return None
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")) or sample.count(0) * 5 > len(sample):
        return "it looks like UTF-16 text; convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8"
    lines = [line for line in sample.split(b"\n") if line.strip()]
    first = f"of its first {len(sample)} bytes"
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if controls * 100 > len(sample) and _most(lines, _has_controls):
        return f"{100 * controls / len(sample):.0f}% {first} are control characters: it is binary"
    decoded = sample.decode("utf-8", errors="surrogateescape")
    invalid = sum(1 for char in decoded if "\udc80" <= char <= "\udcff")
    if invalid * 10 > len(sample) and _most(lines, _not_utf8):
        return (f"{100 * invalid / len(sample):.0f}% {first} are not valid UTF-8: it is binary or in another "
                "encoding (convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8)")
    return None


def _most(lines: list[bytes], bad) -> bool:
    """Whether more than half of `lines` are `bad`: a few bad rows are rejects, not a binary file."""
    return sum(map(bad, lines)) * 2 > len(lines)


def _has_controls(line: bytes) -> bool:
    return len(line.translate(None, _CONTROL_BYTES)) < len(line)


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.end < len(line) - 3  # the sample may cut the last character in two
    return False
