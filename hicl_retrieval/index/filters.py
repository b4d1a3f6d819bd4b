"""Search filters as data: conditions on post metadata, combined with AND.

Each condition is (field, operator, value) from a fixed list, and becomes a fixed SQL template
with the value as a query parameter: the user's text never becomes SQL.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.errors import HiclError
from ..core.files import resolved
from ..core.text import check_unicode
from ..core.times import parse_filter_time

# A corpus file is named by a path (matched resolved: see files.resolved) or by a bare file name.
# Indexes built before sources were stored resolved hold paths as typed: a relative one matches
# a path that ends with it.
_SOURCE = (
    "(source IN (SELECT unnest(?::VARCHAR[])) "
    "OR string_split(source, '/')[-1] IN (SELECT unnest(?::VARCHAR[])) "
    "OR (NOT starts_with(source, '/') "
    "AND EXISTS (SELECT 1 FROM unnest(?::VARCHAR[]) AS named(path) WHERE ends_with(named.path, '/' || source))))"
)
# (field, operator) -> SQL template; "?" is the condition's value, bound as a parameter.
_TEMPLATES = {
    ("hashtag", "has"): "list_contains(hashtags, ?)",
    ("hashtag", "lacks"): "NOT list_contains(hashtags, ?)",
    # screen names are case-insensitive, and dumps write them with or without the '@'
    ("author", "in"): "lower(ltrim(author, '@')) IN (SELECT unnest(?::VARCHAR[]))",
    ("author", "not_in"): "(author IS NULL OR lower(ltrim(author, '@')) NOT IN (SELECT unnest(?::VARCHAR[])))",
    ("created_at", ">="): "created_at >= ?",
    ("created_at", "<"): "created_at < ?",
    ("source", "in"): _SOURCE,
    ("source", "not_in"): f"NOT {_SOURCE}",
}


@dataclass(frozen=True)
class Condition:
    """One condition on a post: ``Condition("hashtag", "has", "#flood")``."""

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if (self.field, self.op) not in _TEMPLATES:
            known = ", ".join(f"{f} {o}" for f, o in _TEMPLATES)
            raise HiclError(f"unknown filter '{self.field} {self.op}'; known: {known}")
        if self.field == "hashtag":
            if not isinstance(self.value, str) or not self.value.strip("#"):
                raise HiclError(f"a hashtag filter needs a tag, not {self.value!r}")
            check_unicode(self.value, "the hashtag filter's tag")
            object.__setattr__(self, "value", "#" + self.value.strip().lstrip("#").lower())
        elif self.field in ("author", "source"):
            values = [self.value] if isinstance(self.value, str) else list(self.value)
            if not values or not all(isinstance(v, str) for v in values):
                raise HiclError(f"a {self.field} filter needs one or more names, not {self.value!r}")
            for value in values:
                check_unicode(value, f"the {self.field} filter's name {value!r}")
            object.__setattr__(self, "value", tuple(v.strip().lstrip("@").lower() if self.field == "author" else v
                                                    for v in values))
        elif not isinstance(self.value, datetime):
            raise HiclError(f"a created_at filter needs a datetime, not {self.value!r}")


@dataclass(frozen=True)
class Filter:
    """Conditions that a hit must all meet."""

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def of(cls, *conditions: Condition) -> Filter:
        return cls(tuple(conditions))

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def to_sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause and its parameters: each template's ``?`` bound to its condition's value."""
        clauses, params = [], []
        for condition in self.conditions:
            template = _TEMPLATES[(condition.field, condition.op)]
            clauses.append(template)
            params += _parameters(condition)
        return " AND ".join(clauses) or "TRUE", params


def _parameters(condition: Condition) -> list[Any]:
    """The values bound to the ``?`` of `condition`'s template, in order."""
    if condition.field == "source":
        paths = sorted({resolved(name) for name in condition.value} | {os.path.normpath(n) for n in condition.value})
        names = [name for name in condition.value if os.sep not in name and "/" not in name]
        return [paths, names, paths]
    if isinstance(condition.value, tuple):
        return [list(condition.value)]
    return [condition.value]


def from_options(
    *,
    has_hashtags: Sequence[str] = (),
    lacks_hashtags: Sequence[str] = (),
    authors: Sequence[str] = (),
    exclude_authors: Sequence[str] = (),
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    sources: Sequence[str] = (),
    exclude_sources: Sequence[str] = (),
) -> Filter:
    """A filter from command-line style options; `since` is inclusive, `until` exclusive (UTC)."""
    conditions = [Condition("hashtag", "has", tag) for tag in has_hashtags]
    conditions += [Condition("hashtag", "lacks", tag) for tag in lacks_hashtags]
    for values, field, op in ((authors, "author", "in"), (exclude_authors, "author", "not_in"),
                              (sources, "source", "in"), (exclude_sources, "source", "not_in")):
        if values:
            conditions.append(Condition(field, op, tuple(values)))
    for value, op in ((since, ">="), (until, "<")):
        if value is not None:
            conditions.append(Condition("created_at", op, parse_filter_time(value)))
    return Filter(tuple(conditions))


