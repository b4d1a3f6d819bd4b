"""Which column (or JSON key) holds the text, id, author and time of a post."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ..core.config import ReaderConfig
from ..core.errors import HiclError

# Column names tried, in order, when the user names none (compared case-insensitively, with
# spaces, dashes and underscores ignored: "Tweet Text" matches "tweet_text").
TEXT_NAMES = ("text", "full_text", "tweet_text", "tweet", "content", "body", "message", "post")
# The named ids come before a bare "id", which is as often a row number (or an index's own vector id, as
# in `export`'s files) as a post id.
ID_NAMES = ("id_str", "post_id", "tweet_id", "status_id", "id")
AUTHOR_NAMES = ("author", "screen_name", "username", "user_screen_name", "user_name", "user")
TIME_NAMES = ("created_at", "timestamp", "date", "time", "datetime", "posted_at")
RETWEET_NAMES = ("retweet_of", "retweeted_status_id_str", "retweeted_status_id")
"""The post id of the original a retweet copies (`export` writes it as retweet_of); found by name only."""


@lru_cache(maxsize=4096)
def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def resolve_column(columns: Iterable[str], requested: str | None, candidates: tuple[str, ...]) -> str | None:
    """The column to use: `requested` (exact, else ignoring case and spacing) or a known name.

    JSON lines resolve their keys once per line, and the lines of a dump mostly share their
    keys: the answer is remembered per set of keys.
    """
    return _resolved(tuple(columns), requested, candidates)


@lru_cache(maxsize=1024)
def _resolved(columns: tuple[str, ...], requested: str | None, candidates: tuple[str, ...]) -> str | None:
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
    retweet: str | None = None

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
        return cls(text=text, **found, retweet=resolve_column(columns, None, RETWEET_NAMES))
