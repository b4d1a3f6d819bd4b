"""A corpus cut into shards that workers read independently, each post keeping its true file and line.

A shard is a whole file, or a byte range of a large uncompressed file of lines (plain text or
JSON lines) that begins and ends at line boundaries. The cuts are found in one pass over the
file that also counts the newlines before each cut, so a shard's reader numbers its lines as
a reader of the whole file does. Compressed files, CSV (a quoted field may span lines),
Parquet and JSON arrays are read whole: one shard each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ReaderConfig
from .inputs import CorpusFile, read_file
from .jsonl import read_json_lines, starts_with_array
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


def read_shard(shard: Shard, config: ReaderConfig) -> Iterator[Record]:
    """The records of `shard`, numbered by their line in the whole file."""
    if shard.whole:
        return read_file(shard.file.path, shard.file.format, config)
    span = Span(shard.start, shard.end, shard.first_line)
    if shard.file.format == "text":
        return read_text(shard.file.path, config, span)
    return read_json_lines(shard.file.path, config, span)


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
