#!/usr/bin/env python3
"""How many posts a second a build's driver reads and writes when encoding costs nothing.

With `--ray`, workers encode and this process reads the corpus and writes every chunk (posts
in DuckDB, float16 vectors, the ledger) in order; so a cluster scales until its workers encode
faster than this rate. Measured here by a real build over TweetEval tweets whose encoder hands
back ready vectors of the #Encoder's 768 dimensions: the build's reading (`encode_seconds`,
here only reading) and writing, and the FAISS step at the end (an exact index, the cheapest).

    python scripts/bench_driver.py --data-dir ../shared/data --posts 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from tweeteval import all_tweets

from hicl_retrieval import BuildConfig, build_index, resolve_encoder


class GivenVectors:
    """An encoder in name: unit vectors made once, handed out by slicing."""

    def __init__(self, dim: int, chunk_size: int) -> None:
        rng = np.random.default_rng(0)
        pool = rng.standard_normal((chunk_size, dim)).astype(np.float32)
        self.pool = pool / np.linalg.norm(pool, axis=1, keepdims=True)
        self.config = dataclasses.replace(resolve_encoder("hashencoder"), model="given-vectors")
        self.dim, self.revision, self.model_bytes = dim, None, 0
        self.device, self.device_name = torch.device("cpu"), "no encoder (vectors given)"

    def encode(self, texts, *, progress=None, **_) -> np.ndarray:
        if progress is not None:
            progress.update(len(texts))
        return self.pool[: len(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tweets = all_tweets(args.data_dir)[: args.posts]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "posts.jsonl"
        corpus.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(tweets)),
                          encoding="utf-8")
        config = BuildConfig(encoder=resolve_encoder("hashencoder"), faiss_factory="flat",
                             chunk_size=args.chunk_size, progress=False, overwrite=True)
        runs = []
        for _ in range(args.repeats):
            report = build_index([corpus], Path(tmp) / "index", config, encoder=GivenVectors(args.dim, args.chunk_size))
            runs.append(report)
    print(f"{len(tweets)} TweetEval posts, {args.dim} dimensions, chunks of {args.chunk_size}, "
          f"{torch.get_num_threads()} threads, {args.repeats} builds")

    def line(name: str, seconds: list[float]) -> str:
        return (f"{name:<28} min {min(seconds):6.2f} s, median {statistics.median(seconds):6.2f} s = "
                f"{len(tweets) / min(seconds):8.0f} / {len(tweets) / statistics.median(seconds):8.0f} posts/s")

    print(line("whole build", [r.seconds for r in runs]))
    print(line("reading", [r.encode_seconds for r in runs]))
    print(line("everything but reading", [r.seconds - r.encode_seconds for r in runs]))


if __name__ == "__main__":
    main()
