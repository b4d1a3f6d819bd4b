"""The input of a build: files and folders named by the user, checked before any work, read in turn.

A folder stands for the files under it (recursively, in name order) whose names say a known
format; the others are listed in `Corpus.skipped`. Every file is checked before anything is
written: it exists, its name is UTF-8 (the index records it as text), its format is known, a
text file is text (not binary, not UTF-16), a CSV has its text column.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ReaderConfig
from ..core.errors import HiclError
from ..core.files import check_name, resolved
from .columns import Columns
from .delimited import csv_columns, read_csv
from .jsonl import count_array_elements, read_jsonl, starts_with_array
from .lines import read_text
from .parquet import parquet_columns, parquet_rows, read_parquet
from .records import Record, noting_times
from .streams import read_sample, sniff_text

FORMATS = ("text", "jsonl", "csv", "tsv", "parquet")

_PARQUET_MAGIC = b"PAR1"
_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd")
_SUFFIX_FORMATS = {
    ".txt": "text", ".text": "text",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}


def format_of_name(path: Path) -> str | None:
    """The format a file's name says (``posts.jsonl.gz``: jsonl), or None."""
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SUFFIX_FORMATS.get(Path(name).suffix)


def detect_format(path: Path, requested: str = "auto") -> str:
    """The format of `path`: `requested` unless ``auto``, else by suffix, else by content."""
    if requested != "auto":
        if requested not in FORMATS:
            raise HiclError(f"unknown corpus format {requested!r}; choose auto or one of {', '.join(FORMATS)}")
        return requested
    named = format_of_name(path)
    if named is not None:
        return named
    with open(path, "rb") as raw:
        if raw.read(4) == _PARQUET_MAGIC:
            return "parquet"
    head = read_sample(path, 4096)[0].lstrip()
    return "jsonl" if head.startswith((b"{", b"[")) else "text"


def estimate_records(path: Path, fmt: str, *, sample_bytes: int = 4 << 20) -> int:
    """About how many records `path` holds, without reading it all (for the build's estimates).

    Parquet: exact, from its metadata. Other formats: records in the first `sample_bytes` of
    (decompressed) content (lines, or a JSON array's elements), scaled by the share of the file
    those bytes came from.
    """
    if fmt == "parquet":
        return parquet_rows(path)
    sample, consumed, ended = read_sample(path, sample_bytes)
    if fmt == "jsonl" and starts_with_array(path):
        records = count_array_elements(sample)
    else:
        records = sample.count(b"\n") + (1 if sample and not sample.endswith(b"\n") else 0)
    if ended or consumed == 0:
        return records
    return round(records * path.stat().st_size / consumed)


def read_file(path: Path, fmt: str, config: ReaderConfig) -> Iterator[Record]:
    if fmt == "text":
        return read_text(path, config)
    if fmt == "jsonl":
        return read_jsonl(path, config)
    if fmt in ("csv", "tsv"):
        return read_csv(path, config, fmt)
    if fmt == "parquet":
        return read_parquet(path, config)
    raise HiclError(f"unknown corpus format {fmt!r}; choose one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    format: str


def _folder_files(folder: Path, requested: str) -> tuple[list[Path], list[Path]]:
    """(files to read, files skipped) under `folder`, in name order; hidden ones are left alone."""
    files, skipped = [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        (files if requested != "auto" or format_of_name(path) else skipped).append(path)
    return files, skipped


class Corpus:
    """The input files of a build, checked before any work starts (exist, format, text, columns)."""

    def __init__(self, paths: Iterable[str | Path], config: ReaderConfig | None = None) -> None:
        self.config = config or ReaderConfig()
        self.files: list[CorpusFile] = []
        self.skipped: list[Path] = []
        """Files inside the folders given whose names say no known format."""
        self.time_warnings: list[str] = []
        """After a full iteration: files most of whose times could not be read, or with `config.time_format`,
        files some of whose times did not match it."""
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                found, skipped = _folder_files(path, self.config.format)
                if not found:
                    raise HiclError(
                        f"the folder {raw} holds no corpus file (names ending in "
                        f"{', '.join(sorted(_SUFFIX_FORMATS))}, optionally compressed)"
                    )
                self.skipped += skipped
            elif path.is_file():
                found = [path]
            else:
                raise HiclError(f"corpus file {raw} does not exist (or is not a file)")
            self.files += [self._checked(file) for file in found]
        if not self.files:
            raise HiclError("no corpus files given")

    def _checked(self, path: Path) -> CorpusFile:
        check_name(resolved(path), "corpus file")  # as posts record it: a name given, or one found in a folder
        fmt = detect_format(path, self.config.format)
        if fmt != "parquet":
            problem = sniff_text(path)
            if problem:
                raise HiclError(f"{path} is not a text corpus file: {problem}")
        if fmt in ("csv", "tsv"):
            Columns.resolve(csv_columns(path, fmt, self.config), self.config, str(path))
        elif fmt == "parquet":
            Columns.resolve(parquet_columns(path), self.config, str(path))
        return CorpusFile(path, fmt)

    def skipped_summary(self) -> str | None:
        """One line naming the files of the folders given that are not read, or None."""
        if not self.skipped:
            return None
        names = ", ".join(str(p) for p in self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
        return f"skipped {len(self.skipped)} files of no known corpus format: {names}"

    def estimated_records(self) -> int:
        """About how many records the corpus holds (see `estimate_records`)."""
        return sum(estimate_records(file.path, file.format) for file in self.files)

    def __iter__(self) -> Iterator[Record]:
        self.time_warnings = []
        for file in self.files:
            yield from noting_times(read_file(file.path, file.format, self.config), file.path,
                                    self.config.time_format, self.time_warnings)


def record_chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """`records` in lists of `size`: one list is encoded and committed at a time."""
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
