"""Corpus readers: stream posts out of dump files in bounded memory, rejecting bad rows.

Formats, one module each: plain text with one post a line (the HICL ``hash_database.txt``
format, `lines`), JSON lines or one JSON array (Twitter/X API v1.1 and v2 objects, or any object
with a text field, `jsonl`), CSV/TSV with a header row (`delimited`) and Parquet (`parquet`);
text formats may be gzip- or zstd-compressed, recognised by their magic bytes (`streams`).

Line-oriented formats are read here line by line rather than through DuckDB's readers,
because every post must carry its source line and every rejected row its line and reason;
DuckDB reads Parquet, where a row number is all there is. Nothing is ever silently dropped:
a record is either a `Post` or a `Reject` (`records`).
"""

from .inputs import (
    FORMATS,
    Corpus,
    CorpusFile,
    detect_format,
    estimate_records,
    format_of_name,
    read_file,
    record_chunks,
)
from .objects import Records
from .records import (
    BAD_CREATED_AT,
    BAD_FIELD,
    BAD_JSON,
    BAD_ROW,
    BAD_UTF8,
    CORRUPT_FILE,
    EMPTY_TEXT,
    MISSING_TEXT,
    NOT_AN_OBJECT,
    NUL_BYTE,
    TOO_LONG,
    Post,
    Record,
    Reject,
    normalize_post_id,
)
from .streams import CorruptStream, open_binary

__all__ = [
    "BAD_CREATED_AT", "BAD_FIELD", "BAD_JSON", "BAD_ROW", "BAD_UTF8", "CORRUPT_FILE", "EMPTY_TEXT", "FORMATS",
    "MISSING_TEXT", "NOT_AN_OBJECT", "NUL_BYTE", "TOO_LONG", "Corpus", "CorpusFile", "CorruptStream", "Post", "Record",
    "Records", "Reject", "detect_format", "estimate_records", "format_of_name", "normalize_post_id", "open_binary",
    "read_file", "record_chunks",
]
