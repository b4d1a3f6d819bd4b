"""Tune an approximate index's search (nprobe, efSearch) to a target recall against exact search."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .faiss_index import VectorIndex, exact_search, reranked
from .manifest import Manifest

LOG = logging.getLogger(__name__)


def format_against(value: float, target: float, *, least: int = 2, most: int = 10) -> tuple[str, str]:
    """`value` and `target` printed with as few decimals (at least `least`) as tell them apart, trailing zeros
    dropped: (0.9998, 1.0) -> ("0.9998", "1"); (0.912, 0.95) -> ("0.91", "0.95"). Rounding keeps their order,
    so a value under its target never prints as reaching it; equal ones print alike."""
    for decimals in range(least, most + 1):
        shown = f"{value:.{decimals}f}", f"{target:.{decimals}f}"
        if shown[0] != shown[1]:
            break
    return shown[0].rstrip("0").rstrip("."), shown[1].rstrip("0").rstrip(".")


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of each row's true top-`k` ids that `found`'s top-`k` holds."""
    hits = sum(len(set(f[:k].tolist()) & set(t[:k].tolist()) - {-1}) for f, t in zip(found, truth))
    return hits / (len(truth) * k) if len(truth) else 1.0


def _without(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row of `ids` without its query's own id, cut to `k` (the query is in the corpus)."""
    return np.stack([row[row != self_id][:k] for row, self_id in zip(ids, own)])


@dataclass(frozen=True)
class Tuning:
    """The search setting chosen for an index and the recall it reached, as the manifest records it."""

    params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float = 1.0
    target: float = 0.95
    queries: int = 0
    tried: dict[str, float] = field(default_factory=dict)
    """Recall@10 reached by each value tried."""

    def to_dict(self) -> dict:
        return asdict(self)


def tune(
    index: VectorIndex,
    stored: np.ndarray,
    ids: np.ndarray,
    *,
    k_factor: int,
    target: float = 0.95,
    queries: int = 500,
    k: int = 10,
    seed: int = 0,
) -> Tuning:
    """The cheapest value of the index's speed/recall parameter whose recall@`k` reaches `target`.

    Queries are `queries` posts drawn from the corpus (ids `ids`, vectors `stored`); each one's
    own id is left out of both result lists, so recall is measured on its true neighbours. The
    search measured is the one queries run: the index, then the exact re-rank (`k_factor`).
    The chosen value is set on `index`; if none reaches `target`, the most thorough one is kept.
    """
    knob = index.tunable()
    if knob is None or len(ids) <= k + 1:
        return Tuning(target=target)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(ids, size=min(queries, len(ids)), replace=False))
    vectors = stored[sample].astype(np.float32)
    _, truth = exact_search(stored, ids, vectors, k + 1)
    truth = _without(truth, sample, k)
    search = reranked(index.search, stored, k_factor, index.size)
    name, values = knob
    tried: dict[str, float] = {}
    for value in values:
        index.set_search_params({name: value})
        _, found = search(vectors, k + 1)
        recall = recall_at_k(_without(found, sample, k), truth, k)
        tried[str(value)] = round(recall, 4)
        LOG.info("%s=%d: recall@%d %.4f", name, value, k, recall)
        if recall >= target:
            break
    return Tuning(params={name: value}, recall_at_10=tried[str(value)], target=target,
                  queries=len(sample), tried=tried)


def tuned_manifest(manifest: Manifest, index: VectorIndex, stored: np.ndarray, ids: np.ndarray,
                   target: float) -> Manifest:
    """`manifest` with the search parameters that reach recall@10 `target` on `index` (see `tune`)."""
    tuning = tune(index, stored, ids, k_factor=manifest.k_factor, target=target)
    if tuning.params:
        recall, wanted = format_against(tuning.recall_at_10, target)
        LOG.info("tuned %s: recall@10 %s (target %s)", tuning.params, recall, wanted)
        if tuning.recall_at_10 < target:
            LOG.warning("%s reaches recall@10 %s only, below the target %s", manifest.faiss_factory, recall, wanted)
    return replace(manifest, search_params=tuning.params, tuning=tuning.to_dict() if tuning.params else {})
