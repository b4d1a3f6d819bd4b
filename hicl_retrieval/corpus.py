"""Corpus readers: stream posts out of dump files in bounded memory, rejecting bad rows.

Formats: plain text with one post a line (the HICL ``hash_database.txt`` format), JSONL
(Twitter/X API v1.1 objects, API v2 objects or responses, or any object with a text field),
CSV/TSV with a header row, and Parquet; text formats may be gzip- or zstd-compressed
(recognised by their magic bytes, whatever the file is called).

Line-oriented formats are read here line by line rather than through DuckDB's readers,
because every post must carry its source line and every rejected row its line and reason;
DuckDB reads Parquet, where a row number is all there is. Nothing is ever silently dropped:
a record is either a `Post` or a `Reject`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from .config import ReaderConfig
from .errors import HiclError

FORMATS = ("text", "jsonl", "csv", "tsv", "parquet")

# Why a row was rejected; the build summary counts them under these names.
BAD_UTF8 = "bad_utf8"
NUL_BYTE = "nul_byte"
TOO_LONG = "too_long"
BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
EMPTY_TEXT = "empty_text"
BAD_ROW = "bad_row"
CORRUPT_FILE = "corrupt_file"

# Column names tried, in order, when the user names none (compared case-insensitively, with
# spaces, dashes and underscores ignored: "Tweet Text" matches "tweet_text").
TEXT_NAMES = ("text", "full_text", "tweet_text", "tweet", "content", "body", "message", "post")
ID_NAMES = ("id_str", "id", "tweet_id", "post_id", "status_id")
AUTHOR_NAMES = ("author", "screen_name", "username", "user_screen_name", "user_name", "user")
TIME_NAMES = ("created_at", "timestamp", "date", "time", "datetime", "posted_at")

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PARQUET_MAGIC = b"PAR1"
_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd")
_SUFFIX_FORMATS = {
    ".txt": "text", ".text": "text",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
}
_SURROGATE = re.compile("[\udc80-\udcff]")
_V1_DATE = "%a %b %d %H:%M:%S %z %Y"


@dataclass(frozen=True, slots=True)
class Post:
    """One good post, with where it came from."""

    text: str
    source: str
    line: int
    post_id: str | None = None
    author: str | None = None
    created_at: datetime | None = None
    """UTC, without tzinfo."""
    retweet_of: str | None = None
    """Post id of the original when this is a retweet and the dump says so."""
    notes: tuple[str, ...] = ()
    """Problems that did not cost the post, e.g. ``bad_created_at``."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that could not become a post, and why."""

    source: str
    line: int
    reason: str
    detail: str = ""


Record = Post | Reject


class _BadRecord(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------------------------
# Files: compression and format


def _decompressing(raw: BinaryIO) -> BinaryIO:
    """`raw` (positioned at its start) decompressed if its magic bytes say gzip or zstd."""
    head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))  # type: ignore[arg-type]
    return raw


def open_binary(path: Path) -> BinaryIO:
    """Open `path` for reading bytes, decompressing gzip or zstd by their magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    stream = _decompressing(raw)
    if isinstance(stream, gzip.GzipFile):
        stream.myfileobj = raw  # closing the GzipFile closes the file too
    return stream


def estimate_records(path: Path, fmt: str, *, sample_bytes: int = 4 << 20) -> int:
    """About how many records `path` holds, without reading it all (for the build's estimates).

    Parquet: exact, from its metadata. Line formats: lines in the first `sample_bytes` of
    (decompressed) content, scaled by the share of the file those bytes came from.
    """
    if fmt == "parquet":
        import duckdb

        return int(duckdb.connect().execute(
            "SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(path)]).fetchone()[0] or 0)
    size = path.stat().st_size
    with open(path, "rb") as raw:
        stream = _decompressing(raw)
        sample = stream.read(sample_bytes)
        consumed = raw.tell() if stream is not raw else len(sample)
        exhausted = not stream.read(1)
    lines = sample.count(b"\n") + (1 if sample and not sample.endswith(b"\n") else 0)
    if exhausted or consumed == 0:
        return lines
    return round(lines * size / consumed)


def detect_format(path: Path, requested: str = "auto") -> str:
    """The format of `path`: `requested` unless ``auto``, else by suffix, else by content."""
    if requested != "auto":
        if requested not in FORMATS:
            raise HiclError(f"unknown corpus format {requested!r}; choose auto or one of {', '.join(FORMATS)}")
        return requested
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    suffix = Path(name).suffix
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    with open(path, "rb") as raw:
        if raw.read(4) == _PARQUET_MAGIC:
            return "parquet"
    with open_binary(path) as stream:
        head = stream.read(4096).lstrip()
    return "jsonl" if head.startswith(b"{") else "text"


def _bounded_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line bytes) pairs; None for a line longer than `limit`, never held whole."""
    number = 0
    while True:
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


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRecord(BAD_UTF8, f"invalid UTF-8 at byte {exc.start}") from None


def _clean_text(value: Any) -> str:
    """The post text of a field value, or a _BadRecord saying why there is none."""
    if value is None:
        raise _BadRecord(MISSING_TEXT, "no text field")
    if not isinstance(value, str):
        raise _BadRecord(MISSING_TEXT, f"text is a {type(value).__name__}, not a string")
    if "\x00" in value:
        raise _BadRecord(NUL_BYTE, "text contains a NUL character")
    if _SURROGATE.search(value):
        raise _BadRecord(BAD_UTF8, "text is not valid UTF-8")
    text = value.strip()
    if not text:
        raise _BadRecord(EMPTY_TEXT, "text is empty")
    return text


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def parse_time(value: Any) -> datetime | None:
    """A UTC timestamp from ISO 8601, the Twitter v1.1 format or epoch seconds/milliseconds.

    Raises ValueError when `value` is present but none of these.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_time(int(text))
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            moment = datetime.strptime(text, _V1_DATE)
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _time_and_notes(value: Any) -> tuple[datetime | None, tuple[str, ...]]:
    try:
        return parse_time(value), ()
    except (ValueError, OverflowError, OSError):
        return None, ("bad_created_at",)


# ---------------------------------------------------------------------------------------------
# Column resolution


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def resolve_column(columns: Iterable[str], requested: str | None, candidates: tuple[str, ...]) -> str | None:
    """The column to use: `requested` (exact, else ignoring case and spacing) or a known name."""
    columns = list(columns)
    by_squash = {}
    for column in columns:
        by_squash.setdefault(_squash(column), column)
    if requested is not None:
        if requested in columns:
            return requested
        return by_squash.get(_squash(requested))
    for name in candidates:
        if _squash(name) in by_squash:
            return by_squash[_squash(name)]
    return None


@dataclass(frozen=True)
class Columns:
    text: str
    id: str | None
    author: str | None
    time: str | None

    @classmethod
    def resolve(cls, columns: list[str], config: ReaderConfig, where: str) -> Columns:
        text = resolve_column(columns, config.text_col, TEXT_NAMES)
        if text is None:
            wanted = repr(config.text_col) if config.text_col else f"one of {', '.join(TEXT_NAMES)}"
            raise HiclError(
                f"{where}: no text column {wanted} among the columns {', '.join(map(repr, columns))}; "
                "name it with --text-col"
            )
        found = {}
        for key, requested, names in (
            ("id", config.id_col, ID_NAMES),
            ("author", config.author_col, AUTHOR_NAMES),
            ("time", config.time_col, TIME_NAMES),
        ):
            found[key] = resolve_column(columns, requested, names)
            if requested is not None and found[key] is None:
                raise HiclError(
                    f"{where}: no column {requested!r} among {', '.join(map(repr, columns))}"
                )
        return cls(text=text, **found)


# ---------------------------------------------------------------------------------------------
# JSON shapes


def _dig(obj: dict, path: str) -> Any:
    """``obj["a"]["b"]`` for the dotted path ``"a.b"``; None where anything is missing."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)  # type: ignore[assignment]
    return obj


def _v1_text(obj: dict) -> Any:
    extended = obj.get("extended_tweet")
    if isinstance(extended, dict) and extended.get("full_text"):
        return extended["full_text"]
    return obj.get("full_text") or obj.get("text")


def _v1_id(obj: dict) -> str | None:
    return _optional_str(obj.get("id_str") or obj.get("id"))


def _from_v1(obj: dict) -> dict[str, Any]:
    """Fields of a Twitter API v1.1 tweet object; a retweet gets its original's full text."""
    text = _v1_text(obj)
    retweet_of = None
    original = obj.get("retweeted_status")
    if isinstance(original, dict):
        retweet_of = _v1_id(original)
        original_text = _v1_text(original)
        if isinstance(original_text, str) and original_text.strip():
            name = _dig(original, "user.screen_name")
            text = f"RT @{name}: {original_text}" if name else original_text
    return {
        "text": text,
        "post_id": _v1_id(obj),
        "author": _optional_str(_dig(obj, "user.screen_name")),
        "created_at": obj.get("created_at"),
        "retweet_of": retweet_of,
    }


def _from_v2(obj: dict, users: dict[str, str], tweets: dict[str, dict]) -> dict[str, Any]:
    """Fields of a Twitter API v2 tweet object, with the response's ``includes`` if any."""
    text = _dig(obj, "note_tweet.text") or obj.get("text")
    retweet_of = None
    for ref in obj.get("referenced_tweets") or ():
        if isinstance(ref, dict) and ref.get("type") == "retweeted":
            retweet_of = _optional_str(ref.get("id"))
            original = tweets.get(retweet_of or "")
            if original:
                original_text = _dig(original, "note_tweet.text") or original.get("text")
                name = users.get(str(original.get("author_id")))
                if isinstance(original_text, str) and original_text.strip():
                    text = f"RT @{name}: {original_text}" if name else original_text
    author_id = _optional_str(obj.get("author_id"))
    return {
        "text": text,
        "post_id": _optional_str(obj.get("id")),
        "author": users.get(author_id or "", author_id),
        "created_at": obj.get("created_at"),
        "retweet_of": retweet_of,
    }


def _is_v1(obj: dict) -> bool:
    return any(key in obj for key in ("id_str", "full_text", "extended_tweet", "retweeted_status")) or (
        isinstance(obj.get("user"), dict)
    )


def _is_v2(obj: dict) -> bool:
    return any(key in obj for key in ("author_id", "edit_history_tweet_ids", "note_tweet", "referenced_tweets"))


def _json_records(obj: dict, config: ReaderConfig) -> list[dict[str, Any]]:
    """The posts one JSON line holds: one tweet, or every tweet of a v2 response's ``data``."""
    if "data" in obj and isinstance(obj["data"], (dict, list)) and config.text_col is None:
        includes = obj.get("includes") if isinstance(obj.get("includes"), dict) else {}
        users = {
            str(u.get("id")): str(u.get("username"))
            for u in includes.get("users") or ()
            if isinstance(u, dict) and u.get("username")
        }
        tweets = {str(t.get("id")): t for t in includes.get("tweets") or () if isinstance(t, dict)}
        data = obj["data"] if isinstance(obj["data"], list) else [obj["data"]]
        return [_from_v2(t, users, tweets) if isinstance(t, dict) else {"text": None} for t in data]
    if config.text_col is None and _is_v1(obj):
        return [_from_v1(obj)]
    if config.text_col is None and _is_v2(obj):
        return [_from_v2(obj, {}, {})]
    columns = list(obj)
    text_key = config.text_col or resolve_column(columns, None, TEXT_NAMES)
    if text_key is None:
        raise _BadRecord(MISSING_TEXT, f"no text field among keys {', '.join(columns[:12])}")

    def field_of(requested: str | None, names: tuple[str, ...]) -> Any:
        key = requested or resolve_column(columns, None, names)
        return _dig(obj, key) if key else None

    return [{
        "text": _dig(obj, text_key),
        "post_id": _optional_str(field_of(config.id_col, ID_NAMES)),
        "author": _optional_str(field_of(config.author_col, AUTHOR_NAMES)),
        "created_at": field_of(config.time_col, TIME_NAMES),
        "retweet_of": None,
    }]


def _post(fields: dict[str, Any], source: str, line: int) -> Post:
    text = _clean_text(fields.get("text"))
    created_at, notes = _time_and_notes(fields.get("created_at"))
    return Post(
        text=text,
        source=source,
        line=line,
        post_id=fields.get("post_id"),
        author=fields.get("author"),
        created_at=created_at,
        retweet_of=fields.get("retweet_of"),
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# Readers, one per format


def _read_lines(path: Path, config: ReaderConfig, parse) -> Iterator[Record]:
    """Shared loop of the text and JSONL readers: bounded lines in, records out."""
    source = str(path)
    number = 0
    try:
        with open_binary(path) as stream:
            for number, line in _bounded_lines(stream, config.max_record_bytes):
                if line is None:
                    yield Reject(source, number, TOO_LONG, f"line longer than {config.max_record_bytes} bytes")
                    continue
                try:
                    if b"\x00" in line:
                        raise _BadRecord(NUL_BYTE, "line contains a NUL byte")
                    yield from parse(_decode(line).rstrip("\r\n"), source, number)
                except _BadRecord as bad:
                    yield Reject(source, number, bad.reason, bad.detail)
    except (EOFError, OSError, ValueError) as exc:  # truncated or corrupt compressed stream
        yield Reject(source, number + 1, CORRUPT_FILE, f"file unreadable from here on: {exc}")


def read_text(path: Path, config: ReaderConfig) -> Iterator[Record]:
    """One post a line; a blank line is an empty post (rejected), as the line count says."""

    def parse(line: str, source: str, number: int) -> Iterator[Record]:
        yield _post({"text": line}, source, number)

    return _read_lines(path, config, parse)


def read_jsonl(path: Path, config: ReaderConfig) -> Iterator[Record]:
    """One JSON object a line; blank lines are skipped; a v2 response line may hold several posts."""

    def parse(line: str, source: str, number: int) -> Iterator[Record]:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _BadRecord(BAD_JSON, f"{exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise _BadRecord(NOT_AN_OBJECT, f"a JSON {type(obj).__name__}, not an object")
        for fields in _json_records(obj, config):
            try:
                yield _post(fields, source, number)
            except _BadRecord as bad:
                yield Reject(source, number, bad.reason, bad.detail)

    return _read_lines(path, config, parse)


class _CsvLines:
    """Decoded physical lines for `csv.reader`, remembering which ones were over-long."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._lines = _bounded_lines(stream, limit)
        self.too_long: set[int] = set()
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        self.number, line = next(self._lines)
        if line is None:
            self.too_long.add(self.number)
            return "\n"
        return line.decode("utf-8", errors="surrogateescape")


def _csv_dialect(path: Path, fmt: str, config: ReaderConfig) -> dict[str, Any]:
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
        lines = _CsvLines(stream, config.max_record_bytes)
        try:
            header = next(csv.reader(lines, **_csv_dialect(path, fmt, config)))
        except StopIteration:
            raise HiclError(f"{path}: the file is empty; a CSV/TSV corpus needs a header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise HiclError(f"{path}: cannot read the header row ({exc})") from None
    return [name.strip().lstrip("\ufeff") for name in header]


def read_csv(path: Path, config: ReaderConfig, fmt: str = "csv") -> Iterator[Record]:
    """CSV/TSV with a header row; a record may span lines (quoted newlines)."""
    source = str(path)
    header = csv_columns(path, fmt, config)
    columns = Columns.resolve(header, config, source)
    index = {name: i for i, name in enumerate(header)}
    csv.field_size_limit(max(config.max_record_bytes, csv.field_size_limit()))
    start = 1
    try:
        with open_binary(path) as stream:
            lines = _CsvLines(stream, config.max_record_bytes)
            reader = csv.reader(lines, **_csv_dialect(path, fmt, config))
            next(reader)  # the header, resolved above
            start = lines.number + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    yield Reject(source, start, BAD_ROW, str(exc))
                    start = lines.number + 1
                    continue
                end = lines.number
                line, start = start, end + 1
                if any(n in lines.too_long for n in range(line, end + 1)):
                    yield Reject(source, line, TOO_LONG, f"a line longer than {config.max_record_bytes} bytes")
                    continue
                if not row:
                    continue
                if len(row) != len(header):
                    yield Reject(source, line, BAD_ROW, f"{len(row)} fields, the header has {len(header)}")
                    continue
                fields = {
                    "text": row[index[columns.text]],
                    "post_id": _optional_str(row[index[columns.id]]) if columns.id else None,
                    "author": _optional_str(row[index[columns.author]]) if columns.author else None,
                    "created_at": row[index[columns.time]] if columns.time else None,
                }
                try:
                    for key in ("post_id", "author"):
                        if fields[key] is not None and _SURROGATE.search(fields[key]):
                            raise _BadRecord(BAD_UTF8, f"{key} is not valid UTF-8")
                    yield _post(fields, source, line)
                except _BadRecord as bad:
                    yield Reject(source, line, bad.reason, bad.detail)
    except (EOFError, OSError, ValueError) as exc:
        yield Reject(source, start, CORRUPT_FILE, f"file unreadable from here on: {exc}")


def parquet_columns(path: Path) -> list[str]:
    import duckdb

    try:
        relation = duckdb.connect().execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)])
        return [row[0] for row in relation.fetchall()]
    except duckdb.Error as exc:
        raise HiclError(f"{path}: not a readable Parquet file ({exc})") from None


def read_parquet(path: Path, config: ReaderConfig, batch_rows: int = 8192) -> Iterator[Record]:
    """Parquet through DuckDB, a record batch at a time; `line` is the 1-based row number."""
    import duckdb

    source = str(path)
    columns = Columns.resolve(parquet_columns(path), config, source)
    con = duckdb.connect()
    try:
        # Only the path is a parameter; column names are picked from the batches by name,
        # so no user text ever becomes SQL.
        result = con.sql("SELECT * FROM read_parquet(?, file_row_number = true)", params=[source])
        batches = (
            result.to_arrow_reader(batch_rows)  # duckdb >= 1.4
            if hasattr(result, "to_arrow_reader")
            else result.fetch_arrow_reader(batch_rows)
        )
        for batch in batches:
            data = batch.to_pydict()
            rows = data["file_row_number"]
            for i, row_number in enumerate(rows):
                fields = {
                    "text": data[columns.text][i],
                    "post_id": _optional_str(data[columns.id][i]) if columns.id else None,
                    "author": _optional_str(data[columns.author][i]) if columns.author else None,
                    "created_at": data[columns.time][i] if columns.time else None,
                }
                try:
                    yield _post(fields, source, row_number + 1)
                except _BadRecord as bad:
                    yield Reject(source, row_number + 1, bad.reason, bad.detail)
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# A whole corpus


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    format: str


class Corpus:
    """The input files of a build, checked before any work starts (exist, format, columns)."""

    def __init__(self, paths: Iterable[str | Path], config: ReaderConfig | None = None) -> None:
        self.config = config or ReaderConfig()
        self.files: list[CorpusFile] = []
        for raw in paths:
            path = Path(raw)
            if not path.is_file():
                raise HiclError(f"corpus file {raw} does not exist (or is not a file)")
            fmt = detect_format(path, self.config.format)
            if fmt == "jsonl":
                _check_json_lines(path)
            elif fmt in ("csv", "tsv"):
                Columns.resolve(csv_columns(path, fmt, self.config), self.config, str(path))
            elif fmt == "parquet":
                Columns.resolve(parquet_columns(path), self.config, str(path))
            self.files.append(CorpusFile(path, fmt))
        if not self.files:
            raise HiclError("no corpus files given")

    def estimated_records(self) -> int:
        """About how many records the corpus holds (see `estimate_records`)."""
        return sum(estimate_records(file.path, file.format) for file in self.files)

    def __iter__(self) -> Iterator[Record]:
        for file in self.files:
            yield from read_file(file.path, file.format, self.config)


def _check_json_lines(path: Path) -> None:
    with open_binary(path) as stream:
        head = stream.read(4096).lstrip()
    if head.startswith(b"["):
        raise HiclError(
            f"{path} holds one JSON array, not JSON lines (one object a line); "
            "convert it first, e.g. jq -c '.[]' FILE > FILE.jsonl"
        )


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
