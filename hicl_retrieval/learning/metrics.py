"""Hashtag retrieval metrics: how often the neighbours of a post share one of its hashtags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def shares_hashtag(query_tags: Iterable[str], neighbour_tags: Iterable[str]) -> bool:
    """A hit: the neighbour carries at least one of the query's (eligible) hashtags."""
    return not set(query_tags).isdisjoint(neighbour_tags)


@dataclass(frozen=True)
class RetrievalScores:
    """Means over queries, each ranking cut at `k`."""

    queries: int
    k: int
    hit_at_1: float
    hit_at_k: float
    precision_at_k: float
    mrr: float
    """Mean reciprocal rank of the first hit within the top `k` (0 when none)."""

    def to_dict(self) -> dict:
        return {"queries": self.queries, "k": self.k, "hit@1": self.hit_at_1, f"hit@{self.k}": self.hit_at_k,
                f"precision@{self.k}": self.precision_at_k, "mrr": self.mrr}


def score_rankings(rankings: Sequence[Sequence[bool]], k: int = 10) -> RetrievalScores:
    """Scores of rankings given as hit flags, best neighbour first (the query itself already left out).

    A ranking shorter than `k` counts its missing places as misses (precision divides by `k`).
    """
    if not rankings:
        raise ValueError("no rankings to score")
    hit1 = hitk = precision = reciprocal = 0.0
    for ranking in rankings:
        top = list(ranking[:k])
        hit1 += bool(top and top[0])
        hitk += any(top)
        precision += sum(top) / k
        reciprocal += next((1 / rank for rank, hit in enumerate(top, 1) if hit), 0.0)
    n = len(rankings)
    return RetrievalScores(queries=n, k=k, hit_at_1=hit1 / n, hit_at_k=hitk / n, precision_at_k=precision / n,
                           mrr=reciprocal / n)


def hit_curve(rankings: Sequence[Sequence[bool]], k: int = 10) -> list[float]:
    """hit@1, hit@2, ..., hit@k of rankings given as hit flags (missing places are misses)."""
    if not rankings:
        raise ValueError("no rankings to score")
    first = [next((rank for rank, hit in enumerate(ranking[:k], 1) if hit), k + 1) for ranking in rankings]
    return [sum(rank <= cut for rank in first) / len(rankings) for cut in range(1, k + 1)]
