#!/usr/bin/env python3
"""The topic adapter, end to end: `adapt` on MiniLM indexes of all TweetEval tweets and of CrisisLexT26.

For each corpus, in one run: the index (built with MiniLM unless `--work-dir` holds it; the
TweetEval one can be given with `--tweeteval-index`), copied; `adapt` of the copy, timed by stage;
then eval-retrieval on exactly the adapter's held-out posts (hashtags stripped, never trained
on) for BM25, the plain index and the adapted one. The plain and adapted rows must repeat
`adapt`'s own before and after figures. Printed next to the time: the floor of its main
stage, encoding the sampled posts (their tokens x 2 FLOPs a model parameter, at the matmul
rate measured here). Where the gain comes from: only a post with an eligible hashtag can be a
hit, so the share of such posts among the top 10, and hit@10 among them only, are printed too.

Targets: held-out hashtag hit@10 +15% relative on TweetEval in at most 5 minutes, +10% on
CrisisLexT26.

    python scripts/bench_adapt.py --data-dir ../shared/data --tweeteval-index indexes/tweeteval-minilm
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from experiment_steps import index

from hicl_retrieval.core.config import AdaptConfig
from hicl_retrieval.workflows.adapt import adapt_index, eligible_tags, split_posts
from hicl_retrieval.workflows.evaluate import evaluate_retrieval
from hicl_retrieval.workflows.search import Retriever

TARGETS = {"tweeteval": 0.15, "crisislex": 0.10}
TIME_LIMIT = 300.0


def corpus_files(data_dir: Path, name: str) -> list[Path]:
    if name == "tweeteval":
        return sorted((data_dir / "tweeteval" / "datasets").glob("*/**/*_text.txt"))
    return sorted((data_dir / "crisislex-t26" / "data" / "CrisisLexT26").glob("*/*-tweets_labeled.csv"))


def matmul_rate(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 matrix product here (the best of `repeats`)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def held_out_and_floor(path: Path, config: AdaptConfig, rate: float) -> tuple[list[str], int, float]:
    """The adapter's held-out query texts, the posts `adapt` encodes, and the seconds their tokens need at `rate`
    (2 FLOPs a non-embedding parameter a token)."""
    with Retriever(path) as retriever:
        _, texts, tags = retriever.store.posts_text()
        split = split_posts(eligible_tags(tags, config), config)
        posts = split.held_out + split.validation + split.anchors
        tokens = sum(len(row) for row in retriever.encoder.tokenize(retriever.query_texts([texts[p] for p in posts],
                                                                                          True)))
        model = retriever.encoder.model
        parameters = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    return [texts[post] for post in split.held_out], len(posts), tokens * 2 * parameters / rate


def run(name: str, plain: Path, work: Path, rate: float, config: AdaptConfig) -> dict:
    adapted = work / f"{name}-adapted"
    shutil.rmtree(adapted, ignore_errors=True)
    shutil.copytree(plain, adapted)
    queries, posts, floor = held_out_and_floor(plain, config, rate)
    report = adapt_index(adapted, config)
    print(report.summary(), flush=True)
    print(f"encode floor: {posts} posts' tokens at {rate / 1e9:.0f} GFLOP/s = {floor:.1f} s "
          f"(measured {report.seconds['encode']:.1f} s, {report.seconds['encode'] / floor:.1f}x the floor)")
    evaluation = evaluate_retrieval([plain, adapted], queries=queries, bm25=True)
    print(evaluation.summary())
    bm25, plain_row, adapted_row = (row.scores.hit_at_k for row in evaluation.rows)
    assert abs(plain_row - report.before) < 1e-9, (plain_row, report.before)
    assert abs(adapted_row - (report.after if report.applied else report.before)) < 1e-9, (adapted_row, report.after)
    gain = report.gain / report.before
    target = TARGETS[name]
    print(f"{name}: held-out hit@10 {report.before:.4f} -> {report.after:.4f} ({gain:+.1%}; target +{target:.0%}: "
          f"{'met' if gain >= target and report.applied else 'NOT met'}); BM25 {bm25:.4f}; "
          f"adapt {report.seconds['total']:.0f} s (limit {TIME_LIMIT:.0f} s: "
          f"{'within' if report.seconds['total'] <= TIME_LIMIT else 'OVER'})\n", flush=True)
    print(f"{name}: neighbours with an eligible hashtag {report.tagged_before:.1%} -> {report.tagged_after:.1%} of the "
          f"top 10; hit@10 among them only {report.among_tagged_before:.4f} -> {report.among_tagged_after:.4f} "
          f"({(report.among_tagged_after - report.among_tagged_before) / report.among_tagged_before:+.1%})\n", flush=True)
    return {"corpus": name, **report.to_dict(), "bm25": bm25, "encode_floor_seconds": floor,
            "evaluation": [row.to_dict() for row in evaluation.rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, default=Path("bench-adapt"))
    parser.add_argument("--tweeteval-index", type=Path, help="an index of all TweetEval tweets (else built here)")
    parser.add_argument("--corpora", nargs="+", default=["tweeteval", "crisislex"], choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--untagged-negatives", type=int, default=AdaptConfig().untagged_negatives)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rate = matmul_rate()
    config = AdaptConfig(seed=args.seed, untagged_negatives=args.untagged_negatives)
    results = []
    for name in args.corpora:
        plain = args.tweeteval_index if name == "tweeteval" and args.tweeteval_index else \
            index(corpus_files(args.data_dir, name), args.work_dir / f"{name}-minilm", "minilm")
        results.append(run(name, plain, args.work_dir, rate, config))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
