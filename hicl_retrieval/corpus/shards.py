"""A corpus cut into shards that workers read independently, each post keeping its true file and line.

A shard is a whole file, or a byte range of a large uncompressed file of lines (plain text or
JSON lines) that begins and ends at line boundaries. The cuts are found in one pass over the
file that also counts the newlines before each cut, so a shard's reader numbers its lines as
a reader of the whole file does. Compressed files, CSV (a quoted field may span lines),
Parquet and JSON arrays are read whole: one shard each.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ReaderConfig
from .inputs import CorpusFile, read_file
from .jsonl import is_json_lines, read_json_lines, starts_with_array
from .lines import Span, read_text
from .records import Record
from .streams import GZIP_MAGIC, ZSTD_MAGIC

_SCAN = 1 << 24


@dataclass(frozen=True)
class Shard:
    """Records `start` to `end` (bytes; `end` None: to the end) of `file`, whose first line is `first_line`."""

    file: CorpusFile
    start: int = 0
    end: int | None = None
    first_line: int = 1

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None

    def describe(self) -> str:
        if self.whole:
            return str(self.file.path)
        return f"{self.file.path} bytes {self.start}-{'' if self.end is None else self.end} (from line {self.first_line})"

    def to_dict(self) -> dict:
        return {"path": str(self.file.path.resolve()), "format": self.file.format, "start": self.start,
                "end": self.end, "first_line": self.first_line}


@dataclass(frozen=True)
class ReadPoint:
    """How far the reading of a shard got: `records` consumed, the last from line `line` (0: unknown), `taken`
    records of that line (a JSON line may hold several posts)."""

    records: int = 0
    line: int = 0
    taken: int = 0

    def after(self, chunk: Sequence[Record]) -> ReadPoint:
        """The point once `chunk`, the records read next, is consumed too."""
        if not chunk:
            return self
        last = chunk[-1].line
        same = next((count for count, record in enumerate(reversed(chunk)) if record.line != last), len(chunk))
        taken = self.taken + same if same == len(chunk) and last == self.line else same
        return ReadPoint(self.records + len(chunk), last, taken)


def _of_lines(shard: Shard, config: ReaderConfig) -> bool:
    """Whether the shard is read a line at a time (plain text, or JSON lines rather than one document)."""
    fmt = shard.file.format
    return fmt == "text" or (fmt == "jsonl" and (not shard.whole or is_json_lines(shard.file.path, config)))


def read_shard(shard: Shard, config: ReaderConfig, point: ReadPoint = ReadPoint()) -> Iterator[Record]:
    """The records of `shard` after `point` (where a resumed shard goes on), numbered by their line in the whole file.

    In a file of lines the lines before the point's are read past without being parsed, so a resumption
    costs what reading the bytes costs (a shard is at most a few hundred MiB); the records of other
    formats are read again and dropped.
    """
    if point.line and _of_lines(shard, config):
        span = Span(shard.start, shard.end, shard.first_line, parse_from=point.line)
        read = read_text if shard.file.format == "text" else read_json_lines
        return itertools.islice(read(shard.file.path, config, span), point.taken, None)
    if shard.whole:
        records = read_file(shard.file.path, shard.file.format, config)
    else:
        span = Span(shard.start, shard.end, shard.first_line)
        records = (read_text if shard.file.format == "text" else read_json_lines)(shard.file.path, config, span)
    return itertools.islice(records, point.records, None)


def cuttable(file: CorpusFile) -> bool:
    """Whether `file` may be cut at line boundaries: uncompressed text or JSON lines (not one array)."""
    if file.format not in ("text", "jsonl"):
        return False
    with open(file.path, "rb") as raw:
        head = raw.read(4)
    if head.startswith((GZIP_MAGIC, ZSTD_MAGIC)):
        return False
    return file.format == "text" or not starts_with_array(file.path)


def cuts(path: Path, pieces: int) -> list[tuple[int, int]]:
    """(byte offset, line number) of the starts of about `pieces` ranges of `path`, each at a line's start.

    One pass: the newlines before each cut are counted as the file is scanned for the first
    newline past each of the evenly spaced targets.
    """
    size = path.stat().st_size
    targets = [size * number // pieces for number in range(1, pieces)]
    found = [(0, 1)]
    newlines = position = 0
    with open(path, "rb") as handle:
        while targets and (block := handle.read(_SCAN)):
            end = position + len(block)
            offset = 0
            while targets and targets[0] < end:
                target = max(targets[0] - position, offset)
                newline = block.find(b"\n", target)
                if newline < 0:  # the line goes on into the next block
                    break
                newlines += block.count(b"\n", offset, newline + 1)
                offset = newline + 1
                if position + offset < size:
                    found.append((position + offset, newlines + 1))
                while targets and targets[0] < position + offset:
                    targets.pop(0)
            newlines += block.count(b"\n", offset)
            position = end
    return found


def plan_shards(files: Sequence[CorpusFile], size: int, config: ReaderConfig | None = None) -> list[Shard]:
    """`files` as shards, in corpus order: each cuttable file of more than 1.5 x `size` bytes in ranges of about
    `size`, every other file whole. A file no longer than `config.max_record_bytes` stays whole too: the JSON
    reader may read it as one object over several lines."""
    whole_below = (config or ReaderConfig()).max_record_bytes
    shards = []
    for file in files:
        length = file.path.stat().st_size
        pieces = round(length / size)
        if pieces < 2 or length <= whole_below or not cuttable(file):
            shards.append(Shard(file))
            continue
        starts = cuts(file.path, pieces)
        ends = [start for start, _ in starts[1:]] + [None]
        shards += [Shard(file, start, end, line) for (start, line), end in zip(starts, ends, strict=True)]
    return shards
