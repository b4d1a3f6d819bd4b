"""CSV and TSV files with a header row; a quoted field may span lines.

A quote that a row opens and never closes makes Python's `csv` read the following rows into
that field: one bad row would silently swallow good ones. So records are parsed strictly, and
a record that spans several lines is kept only when it parses cleanly into the header's number
of fields with an even number of quote characters (well-formed CSV has only pairs: a quoted
field's two and the doubled quotes inside it). Otherwise its first line is rejected
(``bad_row``, naming the unbalanced quote) and the lines after it are read again as rows of
their own, so the row after a broken one is never lost. A row that stays on one line is parsed
leniently instead (a stray quote inside a field is kept as text), as it always was.

What no reader can tell apart: two unbalanced quotes whose second is followed by the delimiter
pair up into one well-formed field over several lines; that record is kept as one post.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..core.config import ReaderConfig
from ..core.errors import HiclError
from ..core.files import resolved
from .columns import Columns
from .lines import bounded_lines, corrupt
from .records import BAD_ROW, TOO_LONG, BadRecord, Record, Reject, make_post
from .streams import CorruptStream, open_binary


class _PhysicalLines:
    """Decoded physical lines for `csv.reader`: the lines of the record under way, and a way back.

    An over-long line (`bounded_lines` gives None) reads as an empty line and is remembered as
    such (None) in `record`.
    """

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._lines = bounded_lines(stream, limit)
        self._back: list[tuple[int, str | None]] = []
        self.record: list[tuple[int, str | None]] = []
        self.last = 0
        """Number of the last line handed out."""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._back:
            number, text = self._back.pop()
        else:
            number, raw = next(self._lines)
            text = None if raw is None else raw.decode("utf-8", errors="surrogateescape")
        self.record.append((number, text))
        self.last = number
        return "\n" if text is None else text

    def begin_record(self) -> None:
        self.record = []

    def read_again(self, lines: list[tuple[int, str | None]]) -> None:
        """Hand `lines` out again, in order, before any new line."""
        self._back.extend(reversed(lines))


def _dialect(fmt: str, config: ReaderConfig) -> dict[str, Any]:
    if config.delimiter is not None:
        delimiter = codecs.decode(config.delimiter, "unicode_escape")  # lets users type '\t'
        if len(delimiter) != 1:
            raise HiclError(f"--delimiter must be one character, not {config.delimiter!r}")
    else:
        delimiter = "\t" if fmt == "tsv" else ","
    return {"delimiter": delimiter, "skipinitialspace": delimiter != "\t"}


def csv_columns(path: Path, fmt: str, config: ReaderConfig) -> list[str]:
    """The header row of a CSV/TSV file."""
    with open_binary(path) as stream:
        lines = _PhysicalLines(stream, config.max_record_bytes)
        try:
            header = next(csv.reader(lines, **_dialect(fmt, config)))
        except StopIteration:
            raise HiclError(f"{path}: the file is empty; a CSV/TSV corpus needs a header row") from None
        except (csv.Error, CorruptStream) as exc:
            raise HiclError(f"{path}: cannot read the header row ({exc})") from None
    return [name.strip().lstrip("\ufeff") for name in header]


def _spanning_problem(record: list[tuple[int, str | None]], row: list[str] | None, error: str | None,
                      fields: int) -> str | None:
    """Why a record over several lines is not a row with a quoted field spanning them, or None."""
    if error is not None:
        return error
    if any(text is None for _, text in record):
        return "it runs into an over-long line"
    if len(row) != fields:
        return f"{len(row)} fields, the header has {fields}"
    if sum(text.count('"') for _, text in record) % 2:
        return "an odd number of quotes"
    return None


def read_csv(path: Path, config: ReaderConfig, fmt: str = "csv") -> Iterator[Record]:
    """CSV/TSV with a header row; a record may span lines (quoted newlines)."""
    source = resolved(path)
    header = csv_columns(path, fmt, config)
    columns = Columns.resolve(header, config, source)
    positions = {name: i for i, name in enumerate(header)}
    dialect = _dialect(fmt, config)
    csv.field_size_limit(max(config.max_record_bytes, csv.field_size_limit()))

    def post_of(row: list[str], line: int) -> Record:
        fields = {
            "text": row[positions[columns.text]],
            "post_id": row[positions[columns.id]] if columns.id else None,
            "author": row[positions[columns.author]] if columns.author else None,
            "created_at": row[positions[columns.time]] if columns.time else None,
            "retweet_of": row[positions[columns.retweet]] if columns.retweet else None,
        }
        try:
            return make_post(fields, source, line, config.time_format)
        except BadRecord as bad:
            return Reject(source, line, bad.reason, bad.detail)

    with open_binary(path) as stream:
        lines = _PhysicalLines(stream, config.max_record_bytes)
        reader = csv.reader(lines, strict=True, **dialect)
        try:
            next(reader)  # the header, resolved above
            while True:
                lines.begin_record()
                try:
                    row = next(reader)
                    error = None
                except StopIteration:
                    break
                except csv.Error as exc:
                    reader = csv.reader(lines, strict=True, **dialect)  # a fresh parser after an error
                    row, error = None, str(exc)
                record = lines.record
                line = record[0][0]
                if len(record) > 1:
                    problem = _spanning_problem(record, row, error, len(header))
                    if problem:  # a quote opened on the first line ran on into the next: reject that line only
                        yield Reject(source, line, BAD_ROW, f"a quote opened on this line is not closed before "
                                                            f"line {record[-1][0]} ({problem})")
                        lines.read_again(record[1:])
                        continue
                elif record[0][1] is None:
                    yield Reject(source, line, TOO_LONG, f"line longer than {config.max_record_bytes} bytes")
                    continue
                if error is not None:
                    try:
                        row = next(csv.reader([record[0][1]], **dialect))  # one line: read it leniently
                    except csv.Error as exc:
                        yield Reject(source, line, BAD_ROW, str(exc))
                        continue
                if not row:
                    continue
                if len(row) != len(header):
                    yield Reject(source, line, BAD_ROW, f"{len(row)} fields, the header has {len(header)}")
                    continue
                yield post_of(row, line)
        except CorruptStream as exc:
            yield corrupt(source, lines.record[0][0] if lines.record else lines.last + 1, exc)
