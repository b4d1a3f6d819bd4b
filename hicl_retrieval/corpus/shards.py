"""A corpus cut into shards that workers read independently, each post keeping its true file and line.

A shard is a byte range of a large uncompressed file of lines (plain text or JSON lines) that
begins and ends at line boundaries, or whole files: one, or several small ones read in turn, so
that a dump of many small files makes a few segments, not one a file. The cuts are found in one
pass over the file that also counts the newlines before each cut, so a shard's reader numbers its
lines as a reader of the whole file does. Compressed files, CSV (a quoted field may span lines),
Parquet and JSON arrays are never cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import ReaderConfig
from ..core.files import resolved
from ..core.times import time_warning
from .inputs import CorpusFile, read_file
from .jsonl import is_json_lines, read_json_lines, starts_with_array
from .lines import Span, read_text
from .records import Post, Record, time_counts
from .streams import GZIP_MAGIC, ZSTD_MAGIC

_SCAN = 1 << 24


@dataclass(frozen=True)
class Shard:
    """Bytes `start` to `end` (`end` None: to the end) of the one file of `files`, whose first line is
    `first_line`; or several whole `files`, read in turn."""

    files: tuple[CorpusFile, ...]
    start: int = 0
    end: int | None = None
    first_line: int = 1

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None

    def describe(self) -> str:
        if self.whole:
            return ", ".join(str(file.path) for file in self.files)
        return (f"{self.files[0].path} bytes {self.start}-{'' if self.end is None else self.end} "
                f"(from line {self.first_line})")

    def to_dict(self) -> dict:
        return {"paths": [str(file.path.resolve()) for file in self.files], "start": self.start, "end": self.end,
                "first_line": self.first_line}


@dataclass(frozen=True)
class ReadPoint:
    """How far the reading of a shard got: `records` consumed, the last from the file `source` (as records name
    it), its line `line` (0: nothing read), `taken` records of that line (a JSON line may hold several posts) and
    `in_file` records of that file."""

    records: int = 0
    source: str = ""
    line: int = 0
    taken: int = 0
    in_file: int = 0

    def after(self, chunk: Sequence[Record]) -> ReadPoint:
        """The point once `chunk`, the records read next, is consumed too."""
        if not chunk:
            return self
        last = chunk[-1]
        line = _trailing(chunk, lambda record: (record.source, record.line) == (last.source, last.line))
        file = _trailing(chunk, lambda record: record.source == last.source)
        taken = self.taken + line if line == len(chunk) and (last.source, last.line) == (self.source, self.line) \
            else line
        in_file = self.in_file + file if file == len(chunk) and last.source == self.source else file
        return ReadPoint(self.records + len(chunk), last.source, last.line, taken, in_file)

    def to_list(self) -> list:
        return [self.records, self.source, self.line, self.taken, self.in_file]


def _trailing(chunk: Sequence[Record], same) -> int:
    """How many records at the end of `chunk` are `same`."""
    return next((count for count, record in enumerate(reversed(chunk)) if not same(record)), len(chunk))


def _of_lines(file: CorpusFile, whole: bool, config: ReaderConfig) -> bool:
    """Whether the file is read a line at a time (plain text, or JSON lines rather than one document)."""
    return file.format == "text" or (file.format == "jsonl" and (not whole or is_json_lines(file.path, config)))


def _records(shard: Shard, file: CorpusFile, config: ReaderConfig, parse_from: int = 0) -> Iterator[Record]:
    """The records of `file` as `shard` holds it (a range, or whole), the lines before `parse_from` read past."""
    if shard.whole and not parse_from:
        return read_file(file.path, file.format, config)
    span = Span(shard.start, shard.end, shard.first_line, parse_from)
    return (read_text if file.format == "text" else read_json_lines)(file.path, config, span)


def read_shard(shard: Shard, config: ReaderConfig, point: ReadPoint = ReadPoint()) -> Iterator[Record]:
    """The records of `shard` after `point` (where a resumed shard goes on), numbered by their line in their file.

    The files before the point's are not read again. In a file of lines the lines before the point's are
    read past without being parsed, so a resumption costs what reading the bytes costs (a shard is at most
    a few hundred MiB); the records of other formats are read again and dropped.
    """
    sources = [resolved(file.path) for file in shard.files]
    if not point.line or sources.count(point.source) != 1:  # nothing read, or a point no file of the shard places
        every = (record for file in shard.files for record in _records(shard, file, config))
        yield from itertools.islice(every, point.records, None)
        return
    first = sources.index(point.source)
    file = shard.files[first]
    if _of_lines(file, shard.whole, config):
        yield from itertools.islice(_records(shard, file, config, parse_from=point.line), point.taken, None)
    else:
        yield from itertools.islice(_records(shard, file, config), point.in_file, None)
    for file in shard.files[first + 1:]:
        yield from _records(shard, file, config)


@dataclass
class Reading:
    """How far the reading of a shard got and what it met, as a segment's ledger keeps it (`stats`): the read
    point, each file's count of posts with a time and of times unreadable (for its time warning), and the posts
    an add skipped as known."""

    shard: Shard
    point: ReadPoint = ReadPoint()
    times: list[list[int]] = field(default_factory=list)
    known: int = 0

    def __post_init__(self) -> None:
        self.times = self.times or [[0, 0] for _ in self.shard.files]
        self._files = {resolved(file.path): number for number, file in enumerate(self.shard.files)}

    @classmethod
    def resumed(cls, shard: Shard, stats: dict) -> Reading:
        """Where the ledger's last `stats` left the shard (an older ledger, without a point: after `read` records)."""
        point = ReadPoint(*stats["point"]) if "point" in stats else ReadPoint(stats.get("read", 0))
        return cls(shard, point, stats.get("times", []), stats.get("known", 0))

    def records(self, config: ReaderConfig) -> Iterator[Record]:
        """The records not yet read (see `read_shard`)."""
        return read_shard(self.shard, config, self.point)

    def count(self, chunk: Sequence[Record], kept: Sequence[Post]) -> None:
        """`chunk` read, of which the posts `kept` are written (the others known, adding)."""
        for post in kept:
            has, lacks = time_counts(post)
            tally = self.times[self._files[post.source]]
            tally[0], tally[1] = tally[0] + has, tally[1] + lacks
        self.known += sum(isinstance(record, Post) for record in chunk) - len(kept)
        self.point = self.point.after(chunk)

    def stats(self) -> dict:
        return {"point": self.point.to_list(), "times": self.times, "known": self.known}


def time_warnings(readings: Sequence[Reading], time_format: str | None) -> list[str]:
    """What `time_warning` says of each file of the `readings`' shards, its counts summed over them."""
    tallies: dict[str, list[int]] = {}
    for reading in readings:
        for file, (timed, unreadable) in zip(reading.shard.files, reading.times, strict=True):
            tally = tallies.setdefault(str(file.path), [0, 0])
            tally[0] += timed
            tally[1] += unreadable
    warnings = (time_warning(path, unreadable, timed, time_format) for path, (timed, unreadable) in tallies.items())
    return [warning for warning in warnings if warning]


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
    `size`, the other files whole, consecutive ones grouped up to about `size` bytes (as they lie on disk; a file
    named twice starts a new group). A file no longer than `config.max_record_bytes` is never cut: the JSON
    reader may read it as one object over several lines."""
    whole_below = (config or ReaderConfig()).max_record_bytes
    shards: list[Shard] = []
    group: list[CorpusFile] = []
    grouped = 0
    for file in files:
        length = file.path.stat().st_size
        pieces = round(length / size)
        if pieces < 2 or length <= whole_below or not cuttable(file):
            if group and (grouped + length > size or file.path.resolve() in {f.path.resolve() for f in group}):
                shards.append(Shard(tuple(group)))
                group, grouped = [], 0
            group.append(file)
            grouped += length
            continue
        if group:
            shards.append(Shard(tuple(group)))
            group, grouped = [], 0
        starts = cuts(file.path, pieces)
        ends = [start for start, _ in starts[1:]] + [None]
        shards += [Shard((file,), start, end, line) for (start, line), end in zip(starts, ends, strict=True)]
    if group:
        shards.append(Shard(tuple(group)))
    return shards
