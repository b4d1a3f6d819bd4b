"""Line-oriented files: bounded lines with their numbers, and the plain-text reader (one post a line)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.config import ReaderConfig
from ..core.files import resolved
from .records import BAD_UTF8, CORRUPT_FILE, NUL_BYTE, TOO_LONG, BadRecord, Record, Reject, make_post
from .streams import CorruptStream, open_binary


@dataclass(frozen=True)
class Span:
    """Bytes `start` to `end` (None: the end) of an uncompressed file, from the start of its line `first_line`;
    the lines before `parse_from` are read past, not parsed (what a resumed build has already committed)."""

    start: int = 0
    end: int | None = None
    first_line: int = 1
    parse_from: int = 0


def bounded_lines(stream: BinaryIO, limit: int, span: Span = Span()) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line bytes) pairs; None for a line longer than `limit`, never held whole.

    With a `span`, the stream is read from its start to its end, numbered from its first line.
    """
    number = span.first_line - 1
    if span.start:
        stream.seek(span.start)
    while True:
        if span.end is not None and stream.tell() >= span.end:
            return
        line = stream.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line in bounded pieces
                rest = stream.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


def decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(BAD_UTF8, f"invalid UTF-8 at byte {exc.start}") from None


def corrupt(source: str, line: int, exc: Exception) -> Reject:
    """The reject that ends a damaged file: everything from `line` on is unreadable."""
    return Reject(source, line, CORRUPT_FILE, f"file unreadable from here on: {exc}")


def read_lines(
    path: Path, config: ReaderConfig, parse: Callable[[str, str, int], Iterator[Record]], span: Span = Span()
) -> Iterator[Record]:
    """Shared loop of the text and JSONL readers: bounded lines (of `span`) in, `parse`'s records out."""
    source = resolved(path)
    number = span.first_line - 1
    with open_binary(path) as stream:
        try:
            for number, line in bounded_lines(stream, config.max_record_bytes, span):
                if number < span.parse_from:
                    continue
                if line is None:
                    yield Reject(source, number, TOO_LONG, f"line longer than {config.max_record_bytes} bytes")
                    continue
                try:
                    if b"\x00" in line:
                        raise BadRecord(NUL_BYTE, "line contains a NUL byte")
                    yield from parse(decode(line).rstrip("\r\n"), source, number)
                except BadRecord as bad:
                    yield Reject(source, number, bad.reason, bad.detail)
        except CorruptStream as exc:
            yield corrupt(source, number + 1, exc)


def read_text(path: Path, config: ReaderConfig, span: Span = Span()) -> Iterator[Record]:
    """One post a line (of `span`); a blank line is an empty post (rejected), as the line count says."""

    def parse(line: str, source: str, number: int) -> Iterator[Record]:
        yield make_post({"text": line}, source, number)

    return read_lines(path, config, parse, span)
