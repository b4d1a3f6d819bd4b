"""Hashtag retrieval quality of indexes (one encoder each) and BM25, on the same queries and posts.

A query is a post with hashtags; its hashtags are stripped before it is searched, and a
neighbour is a hit when it carries one of the query's eligible hashtags (those within the
vocabulary's frequency limits, counted over the indexed posts). The query itself and its
copies are never counted: searches run with the library's de-duplication, keyed on the
query's original text. Every retriever gets the same queries and searches the same posts.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.bounds import COUNT, SHARE, Bounds, check
from ..core.config import DeviceConfig
from ..core.errors import HiclError
from ..core.files import text_lines
from ..core.text import extract_hashtags, strip_hashtags
from ..encoding.bm25 import Bm25
from ..index.directory import IndexDir
from ..index.hits import distinct_hits
from ..learning.metrics import RetrievalScores, hit_curve, score_rankings, shares_hashtag
from ..learning.pairs import TagVocabulary
from .search import Retriever


@dataclass(frozen=True)
class EvalRow:
    name: str
    scores: RetrievalScores
    seconds: float
    """Time to answer every query, set-up included: loading the encoder, or indexing the posts for BM25."""
    curve: tuple[float, ...] = ()
    """hit@1 ... hit@k."""

    def to_dict(self) -> dict:
        return {"retriever": self.name, **self.scores.to_dict(), "seconds": round(self.seconds, 1),
                "hit_curve": list(self.curve)}


@dataclass(frozen=True)
class EvalReport:
    posts: int
    queries: int
    skipped: int
    """Queries given without an eligible hashtag: nothing to score them on."""
    tags: int
    rows: list[EvalRow]

    def table(self) -> str:
        k = self.rows[0].scores.k
        width = max(len("retriever"), *(len(row.name) for row in self.rows))
        lines = [f"{'retriever':<{width}} {'hit@1':>6} {f'hit@{k}':>6} {f'P@{k}':>6} {'MRR':>6} {'seconds':>8}"]
        for row in self.rows:
            s = row.scores
            lines.append(f"{row.name:<{width}} {s.hit_at_1:6.3f} {s.hit_at_k:6.3f} {s.precision_at_k:6.3f} "
                         f"{s.mrr:6.3f} {row.seconds:8.1f}")
        return "\n".join(lines)

    def summary(self) -> str:
        skipped = f" ({self.skipped} without an eligible hashtag skipped)" if self.skipped else ""
        return (f"{self.queries} queries{skipped}, hashtags stripped, searching {self.posts} posts; "
                f"{self.tags} hashtags in the vocabulary\n" + self.table())


def read_queries(path: str | Path) -> list[str]:
    """Query posts from JSON lines with a ``text`` key (such as train-encoder's held_out.jsonl) or plain lines."""
    path = Path(path)
    lines = [line for _, line in text_lines(path, "query file") if line.strip()]
    if path.suffix not in (".jsonl", ".json", ".ndjson"):
        return lines
    queries = []
    for number, line in enumerate(lines, 1):
        try:
            queries.append(json.loads(line)["text"])
        except (ValueError, KeyError, TypeError):
            raise HiclError(f"{path} line {number}: expected a JSON object with a 'text' key") from None
    return queries


def _open_store(path: str | Path):
    directory = IndexDir(path)
    return directory.open_store(directory.read_manifest())


def _label(path: str | Path) -> str:
    manifest = IndexDir(path).read_manifest()
    adapter = f", adapter rank {manifest.adapter['rank']}" if manifest.adapter else ""
    return f"{Path(path).resolve().name} ({manifest.encoder.preset or Path(manifest.encoder.model).name}{adapter})"


def evaluate_retrieval(
    indexes: Sequence[str | Path],
    *,
    queries: Sequence[str] | None = None,
    sample: int | None = None,
    bm25: bool = False,
    k: int = 10,
    min_count: int = 2,
    max_share: float = 0.01,
    seed: int = 0,
    threads: int | None = None,
    running: DeviceConfig | None = None,
) -> EvalReport:
    """Score each index, and BM25 over the same posts when `bm25`, on `queries` or on `sample`
    posts of the indexes drawn (with `seed`) among those with an eligible hashtag."""
    check("-k", k, COUNT)
    check("--sample", sample, Bounds(low=1, integer=True, optional=True))
    check("--min-count", min_count, COUNT)
    check("--max-share", max_share, SHARE)
    if not indexes:
        raise HiclError("give at least one index to evaluate")
    if (queries is None) == (sample is None):
        raise HiclError("give either queries or a sample size, not both or neither")
    fingerprints = {}
    for path in indexes:
        store = _open_store(path)
        try:
            fingerprints[str(path)] = store.fingerprint()
            if len(fingerprints) == 1:
                ids, texts, tags = store.posts_text()
        finally:
            store.close()
    rules = {str(path): IndexDir(path).read_manifest().hashtag_rule for path in indexes}
    if len(set(rules.values())) > 1:
        raise HiclError(f"the indexes extract hashtags by different rules ({rules}); build them with the same one")
    rule = rules[str(indexes[0])]
    if len(set(fingerprints.values())) > 1:
        counts = ", ".join(f"{path}: {count} posts" for path, (count, _) in fingerprints.items())
        raise HiclError(f"the indexes hold different posts ({counts}); build them from the same corpus")
    vocabulary = TagVocabulary.build(tags, min_count=min_count, max_share=max_share)
    if sample is not None:
        eligible = [text for text, post_tags in zip(texts, tags) if vocabulary.eligible(post_tags)]
        if sample > len(eligible):
            raise HiclError(f"only {len(eligible)} posts carry an eligible hashtag; sample at most that many")
        queries = random.Random(seed).sample(eligible, sample)
    wanted = [vocabulary.eligible(extract_hashtags(query, rule)) for query in queries]
    kept = [(query, query_tags) for query, query_tags in zip(queries, wanted) if query_tags]
    if not kept:
        raise HiclError("no query carries a hashtag within the vocabulary's limits; nothing to score")
    texts_of_queries = [query for query, _ in kept]

    def scored(name: str, hits, started: float) -> EvalRow:
        rankings = [[shares_hashtag(query_tags, hit.hashtags) for hit in query_hits]
                    for (_, query_tags), query_hits in zip(kept, hits)]
        return EvalRow(name, score_rankings(rankings, k=k), time.perf_counter() - started, tuple(hit_curve(rankings, k)))

    rows = []
    if bm25:
        started = time.perf_counter()
        lexical = Bm25(texts, ids)
        found = lexical.search([strip_hashtags(query, rule) for query in texts_of_queries], 4 * k + 16)
        store = _open_store(indexes[0])
        try:
            hits = []
            for query, candidates in zip(texts_of_queries, found):
                stored = store.fetch([post for _, post in candidates])
                hits.append(distinct_hits(((score, stored.get(post)) for score, post in candidates), query, k,
                                          hashtag_rule=rule))
        finally:
            store.close()
        rows.append(scored("bm25", hits, started))
    for path in indexes:
        started = time.perf_counter()
        with Retriever(path, threads=threads, running=running) as retriever:
            results = retriever.search(texts_of_queries, k=k, strip_query_hashtags=True)
        rows.append(scored(_label(path), [result.hits for result in results], started))
    return EvalReport(posts=fingerprints[str(indexes[0])][0], queries=len(kept), skipped=len(queries) - len(kept),
                      tags=len(vocabulary.tags), rows=rows)
