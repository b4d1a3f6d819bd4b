"""The bodies of requests, checked strictly: a number is a JSON number, a flag true or false, never a text
that looks like one (``"k": "3"`` and ``"dedupe": "no"`` are refused with 422, not guessed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import HiclError
from ..core.text import check_unicode
from ..core.times import parse_filter_time
from ..index.filters import Condition, Filter


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FilterCondition(Strict):
    """One condition of a filter, exactly the library's `Condition`: ``{"field": "hashtag", "op": "has", "value": "#flood"}``."""

    field: str
    op: str
    value: str | list[str]


class SearchRequest(Strict):
    queries: str | list[str] = Field(description="one post, or a list of posts")
    k: int = Field(10, description="hits per query")
    filter: list[FilterCondition] = Field(default_factory=list, description="conditions combined with AND")
    dedupe: bool = True
    strip_hashtags: bool = False


class AddRequest(Strict):
    posts: list[dict[str, Any]] = Field(description="posts as JSON objects with the JSON-lines reader's fields "
                                                    "(text, id, author, created_at, ...) or API tweet objects")
    time_format: str | None = Field(None, description="how created_at is written when it is not ISO 8601, the "
                                                      "Twitter format or Unix seconds: a strptime format, unix or "
                                                      "unix_ms")


class DeleteRequest(Strict):
    post_ids: list[str | int] = Field(default_factory=list)
    filter: list[FilterCondition] = Field(default_factory=list, description="posts meeting all of these")


def to_filter(conditions: list[FilterCondition]) -> Filter:
    """The library's `Filter` of a request's conditions (a created_at value read as `--since` reads it)."""
    made = []
    for given in conditions:
        value: Any = given.value
        if given.field == "created_at":
            if not isinstance(value, str):
                raise HiclError("a created_at filter needs one time, e.g. \"2024-05-01\"")
            value = parse_filter_time(check_unicode(value, "the created_at filter's time"))
        made.append(Condition(given.field, given.op, value))
    return Filter(tuple(made))
