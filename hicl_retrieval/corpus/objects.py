"""Posts handed over as Python objects rather than files: what `add_records` and the service's /add read.

A dict is read exactly as the JSON reader reads one object of a file (an API v1.1 or v2 tweet,
or any object with a text key); a `Post` is taken as it is. Records are numbered from 1 in the
order given, and every post records `source` (for example ``http 2026-12-07T10:00:00Z``) and
its number as its line, so an added post says where it came from as a file's post does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

from ..core.config import ReaderConfig
from .jsonl import posts_of
from .records import BAD_CREATED_AT, BadRecord, Post, Record, Reject, noting_times


class Records:
    """`objects` as a corpus: iterated once into posts and rejects, with `Corpus`'s report fields."""

    def __init__(self, objects: Iterable[dict[str, Any] | Post], source: str, config: ReaderConfig | None = None):
        self.objects, self.source, self.config = objects, source, config or ReaderConfig()
        self.skipped: list = []
        self.time_warnings: list[str] = []

    def skipped_summary(self) -> None:
        return None

    def estimated_records(self) -> int:
        return len(self.objects) if isinstance(self.objects, Sized) else 0

    def __iter__(self) -> Iterator[Record]:
        self.time_warnings = []
        records = (record for number, obj in enumerate(self.objects, 1) for record in self._read(obj, number))
        yield from noting_times(records, self.source, self.config.time_format, self.time_warnings)

    def _read(self, obj: Any, number: int) -> Iterator[Record]:
        if isinstance(obj, Post):
            yield obj
            return
        try:
            yield from posts_of(obj, self.config, self.source, number)
        except BadRecord as bad:
            yield Reject(self.source, number, bad.reason, bad.detail)


def problems(records: Iterable[Record], name: str = "posts", time_hint: str = "name its format") -> list[str]:
    """What keeps each record of a request from being a post with a readable time, as ``posts[3]: ...``
    (numbered from 0, as the request's list is): a reject's reason, or a time that could not be read."""
    found = []
    for record in records:
        where = f"{name}[{record.line - 1}]"
        if isinstance(record, Reject):
            found.append(f"{where}: {record.detail or record.reason} ({record.reason})")
        elif BAD_CREATED_AT in record.notes:
            found.append(f"{where}: its time cannot be read (bad_created_at); {time_hint}")
    return found
