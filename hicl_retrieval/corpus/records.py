"""What a reader yields for each row of a dump: a `Post`, or a `Reject` saying where and why.

Nothing is ever silently dropped: a row becomes one or the other. Field values are cleaned
here, the same way for every format: texts and names must be valid UTF-8 without NUL
characters, post ids lose the quotes and spaces dumps wrap them in, and a time that cannot be
read keeps the post with the note ``bad_created_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.text import is_blank, is_unicode
from ..core.times import parse_post_time, time_warning

# Why a row was rejected; the build summary counts them under these names.
BAD_UTF8 = "bad_utf8"
NUL_BYTE = "nul_byte"
TOO_LONG = "too_long"
BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
EMPTY_TEXT = "empty_text"
BAD_ROW = "bad_row"
BAD_FIELD = "bad_field"
"""A post id, retweeted post id or author that is a JSON object, list or true/false, not a string or number."""
CORRUPT_FILE = "corrupt_file"
# A note on a post that was kept.
BAD_CREATED_AT = "bad_created_at"

_ID_WRAPPING = " \t'\"`"


@dataclass(frozen=True, slots=True)
class Post:
    """One good post, with where it came from."""

    text: str
    source: str
    """The file, resolved (absolute, normalised)."""
    line: int
    """Its line in the file, from 1 (the row for Parquet, the element of a JSON array)."""
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


class BadRecord(Exception):
    """Raised while parsing a row; the reader turns it into a `Reject` at the row's line."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _check_chars(value: str, what: str) -> None:
    if "\x00" in value:
        raise BadRecord(NUL_BYTE, f"{what} contains a NUL character")
    if not is_unicode(value):
        raise BadRecord(BAD_UTF8, f"{what} is not valid UTF-8")


def clean_text(value: Any) -> str:
    """The post text of a field value, or a `BadRecord` saying why there is none."""
    if value is None:
        raise BadRecord(MISSING_TEXT, "no text field")
    if not isinstance(value, str):
        raise BadRecord(MISSING_TEXT, f"text is a {type(value).__name__}, not a string")
    _check_chars(value, "text")
    text = value.strip()
    if is_blank(text):
        raise BadRecord(EMPTY_TEXT, "text is empty" if not text else "text shows nothing (only invisible characters)")
    return text


def optional_str(value: Any) -> str | None:
    """`value` as a string; None for a missing or empty value (whole floats lose their ``.0``)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _scalar(value: Any, what: str) -> Any:
    """`value` unless it is a JSON object, list or boolean, which no id or name is (a reader's --id-col and
    --author-col take a dotted path, such as user.id, to the field inside an object that is)."""
    if isinstance(value, (dict, list, bool)):
        kind = {dict: "an object", list: "a list", bool: "true or false"}[type(value)]
        raise BadRecord(BAD_FIELD, f"{what} is {kind}, not a string or a number")
    return value


def normalize_post_id(value: Any) -> str | None:
    """A post id as the index keeps it: without the quotes and spaces dumps wrap ids in.

    ``'3141592653'`` (quoted against spreadsheets turning ids into floats) and ``3141592653``
    are the same post; `delete --post-id` normalises its ids the same way.
    """
    text = optional_str(value)
    if text is None:
        return None
    text = text.strip(_ID_WRAPPING)
    return text or None


def _name(value: Any, what: str) -> str | None:
    text = optional_str(value)
    if text is None:
        return None
    _check_chars(text, what)
    return text.strip() or None


def make_post(fields: dict[str, Any], source: str, line: int, time_format: str | None = None) -> Post:
    """A `Post` from a reader's fields (text, post_id, author, created_at, retweet_of), or a `BadRecord`."""
    text = clean_text(fields.get("text"))
    post_id = _name(normalize_post_id(_scalar(fields.get("post_id"), "the post id")), "post id")
    try:
        created_at, notes = parse_post_time(fields.get("created_at"), time_format), ()
    except (ValueError, OverflowError, OSError):
        created_at, notes = None, (BAD_CREATED_AT,)
    return Post(
        text=text,
        source=source,
        line=line,
        post_id=post_id,
        author=_name(_scalar(fields.get("author"), "the author"), "author"),
        created_at=created_at,
        retweet_of=_name(normalize_post_id(_scalar(fields.get("retweet_of"), "the retweeted post id")),
                         "retweeted post id"),
        notes=notes,
    )


def time_counts(record: Record) -> tuple[int, int]:
    """(1 if `record` is a post with a time, readable or not; 1 if its time could not be read), for `time_warning`."""
    if isinstance(record, Post) and (record.created_at is not None or record.notes):
        return 1, int(BAD_CREATED_AT in record.notes)
    return 0, 0


def noting_times(records: Iterable[Record], where: object, time_format: str | None,
                 warnings: list[str]) -> Iterator[Record]:
    """`records` passed on; at their end, `warnings` gains what `time_warning` says of the times of their posts."""
    timed = unreadable = 0
    for record in records:
        has, lacks = time_counts(record)
        timed, unreadable = timed + has, unreadable + lacks
        yield record
    warning = time_warning(where, unreadable, timed, time_format)
    if warning:
        warnings.append(warning)
