#!/usr/bin/env python3
"""Build throughput and query latency of the core engine on real tweets (TweetEval).

Builds an index over a seeded sample of TweetEval tweets with the given encoder (default the
offline `minilm` preset), then times queries drawn from tweets not in the index:

- build: posts/s over the whole build, and the share of time spent outside the encoder;
- single queries: p50/p95 latency of `Retriever.search(q, k)` one query at a time, split
  into encoding and the rest (FAISS search, DuckDB metadata, de-duplication);
- batched: wall time of one `search` call with 1,000 queries, repeated (min and median).

    python scripts/bench_core.py --data-dir ../shared/data --posts 20000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from timing import percentile
from tweeteval import all_tweets

from hicl_retrieval import BuildConfig, Retriever, build_index, resolve_encoder
from hicl_retrieval.core.text import duplicate_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--posts", type=int, default=20000, help="tweets to index (default 20000)")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--single", type=int, default=200, help="single queries to time (default 200)")
    parser.add_argument("--batched", type=int, default=1000, help="queries in the batched call (default 1000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    tweets = all_tweets(args.data_dir)
    random.Random(args.seed).shuffle(tweets)
    corpus, held_out = tweets[: args.posts], tweets[args.posts :]
    corpus_keys = {duplicate_key(t) for t in corpus}
    queries = [t for t in held_out if duplicate_key(t) not in corpus_keys][: max(args.single, args.batched)]
    print(f"tweets: {len(tweets)} distinct in TweetEval; indexing {len(corpus)}, {len(queries)} held-out queries")

    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.txt"
        corpus_file.write_text("\n".join(t.replace("\n", " ") for t in corpus) + "\n", encoding="utf-8")
        config = BuildConfig(encoder=resolve_encoder(args.encoder), threads=args.threads, progress=False)
        report = build_index([corpus_file], Path(tmp) / "index", config)
        outside = report.seconds - report.encode_seconds
        print(f"build: {report.indexed} posts in {report.seconds:.1f} s = {report.indexed / report.seconds:.1f} posts/s; "
              f"encoder {report.encode_seconds:.1f} s, outside the encoder {outside:.1f} s "
              f"({100 * outside / report.seconds:.1f}%, of which {report.load_seconds:.1f} s loading the model)")

        with Retriever(Path(tmp) / "index", threads=args.threads) as retriever:
            retriever.search(queries[:5], k=args.k)  # warm-up
            total, encode, rest = [], [], []
            for query in queries[: args.single]:
                start = time.perf_counter()
                vector = retriever.encoder.encode([query])
                middle = time.perf_counter()
                retriever.search_vectors(vector, args.k, queries=[query])
                end = time.perf_counter()
                total.append(end - start)
                encode.append(middle - start)
                rest.append(end - middle)
            print(f"single query (k={args.k}, {len(total)} queries): p50 {1000 * percentile(total, 50):.1f} ms, "
                  f"p95 {1000 * percentile(total, 95):.1f} ms; of which encoding p50 "
                  f"{1000 * percentile(encode, 50):.1f} ms, search+metadata+dedupe p50 "
                  f"{1000 * percentile(rest, 50):.1f} ms (p95 {1000 * percentile(rest, 95):.1f} ms)")
            batch = queries[: args.batched]
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                results = retriever.search(batch, k=args.k)
                times.append(time.perf_counter() - start)
            assert all(len(r.hits) == args.k for r in results)
            print(f"batched: {len(batch)} queries in one call, min {min(times):.2f} s, "
                  f"median {statistics.median(times):.2f} s over {args.repeats} runs "
                  f"({len(batch) / min(times):.0f} queries/s)")


if __name__ == "__main__":
    main()
