"""Hits: retrieved posts with their scores, and the choice of the first k that are not copies of each other."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.text import DEFAULT_HASHTAG_RULE, CopyKey
from .store import PostRow


@dataclass(frozen=True)
class Hit:
    """One retrieved post."""

    id: int
    score: float
    """Cosine similarity to the query."""
    text: str
    hashtags: list[str]
    post_id: str | None
    author: str | None
    created_at: datetime | None
    retweet_of: str | None
    source: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query, best first."""

    query: str
    hits: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [hit.to_dict() for hit in self.hits]}


def _hit(row: PostRow, score: float) -> Hit:
    return Hit(id=int(row.id), score=float(score), text=row.text, hashtags=list(row.hashtags), post_id=row.post_id,
               author=row.author, created_at=row.created_at, retweet_of=row.retweet_of, source=row.source,
               line=row.line)


class _Kept:
    """The hits accepted so far for one query, and what makes a candidate a copy of them."""

    def __init__(self, query: str | None, dedupe: bool, hashtag_rule: str) -> None:
        self.dedupe, self.hashtag_rule = dedupe, hashtag_rule
        self.keys = [CopyKey.of(query, rule=hashtag_rule)] if query and dedupe else []
        self.post_ids: set[str] = set()
        self.hits: list[Hit] = []

    def offer(self, row: PostRow, score: float) -> None:
        """Keep `row` unless de-duplicating and it is a copy of the query or of a kept hit."""
        if self.dedupe:
            key = CopyKey.of(row.text, row.dup_key, self.hashtag_rule)
            linked = {row.post_id, row.retweet_of} - {None}
            if linked & self.post_ids or any(key.copies(seen) for seen in self.keys):
                return
            self.keys.append(key)
            self.post_ids.update(linked)
        self.hits.append(_hit(row, score))


def distinct_hits(candidates: Iterable[tuple[float, PostRow | None]], query: str | None, k: int, *,
                  dedupe: bool = True, hashtag_rule: str = DEFAULT_HASHTAG_RULE) -> list[Hit]:
    """The first `k` of (score, store row) candidates, best first, without copies of the `query`
    text or of a better hit when `dedupe` (see `CopyKey`, whose keys without hashtags follow
    `hashtag_rule`); rows that are None (deleted) skipped."""
    kept = _Kept(query, dedupe, hashtag_rule)
    for score, row in candidates:
        if row is not None:
            kept.offer(row, score)
            if len(kept.hits) == k:
                break
    return kept.hits
