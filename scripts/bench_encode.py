#!/usr/bin/env python3
"""Our encoding loop against the HICL reference loop, on the same model and the same tweets.

The reference loop (HICL ``preprocess_extract_feature.py`` / ``preprocess_match.py``): the
database in batches of 64 in corpus order, each padded to its longest post, no length
sorting; queries encoded one at a time. Ours: `Encoder.encode` (tokenise once, sort by
length, batches of 64, inference mode), queries batched. Both pool as the model's preset says
(mean for MiniLM; the reference takes ``pooler_output`` of the #Encoder) and L2-normalise, so
the vectors agree; only the loop differs. Also measured: the optional int8 path (dynamic
quantisation of the linear layers), its speed-up and how much its top-10 neighbours overlap
float32's. Repeats each timing and prints min and median.

    python scripts/bench_encode.py --data-dir ../shared/data --posts 5000 --queries 500
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tweeteval import all_tweets

from hicl_retrieval import Encoder, resolve_encoder
from hicl_retrieval.index.faiss_index import exact_search


def reference_loop(encoder: Encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """The HICL loop: corpus order, fixed batches padded per batch, torch.no_grad."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encoder.tokenizer(
                encoder.prepare(texts[start : start + batch_size]), padding=True, truncation=True,
                max_length=encoder.config.max_length, return_tensors="pt",
            )
            outputs = encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            pooled = encoder._pool(outputs, batch["attention_mask"])
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.vstack(rows)


def timed(function, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def rate(count: int, times: list[float]) -> str:
    return f"best {count / min(times):.1f}/s, median {count / statistics.median(times):.1f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tweets = all_tweets(args.data_dir)
    random.Random(args.seed).shuffle(tweets)
    posts, queries = tweets[: args.posts], tweets[args.posts : args.posts + args.queries]
    config = resolve_encoder(args.encoder)
    encoder = Encoder(config)
    print(f"{config.model}, pooling {config.pooling}, {torch.get_num_threads()} threads; "
          f"{len(posts)} TweetEval posts, {len(queries)} queries, {args.repeats} runs each")

    ref_times, ref_vectors = timed(lambda: reference_loop(encoder, posts, args.batch_size), args.repeats)
    our_times, our_vectors = timed(lambda: encoder.encode(posts, batch_size=args.batch_size), args.repeats)
    print(f"database, reference loop: {rate(len(posts), ref_times)}")
    print(f"database, ours:           {rate(len(posts), our_times)}")
    print(f"database speed-up (ours / reference): best {min(ref_times) / min(our_times):.2f}x, "
          f"median {statistics.median(ref_times) / statistics.median(our_times):.2f}x; "
          f"max |difference| of vectors {np.abs(ref_vectors - our_vectors).max():.1e}")

    ref_q, _ = timed(lambda: [reference_loop(encoder, [q], 1) for q in queries], args.repeats)
    our_q, query_vectors = timed(lambda: encoder.encode(queries, batch_size=args.batch_size), args.repeats)
    print(f"queries, reference (one at a time): {rate(len(queries), ref_q)}; ours (batched): {rate(len(queries), our_q)}; "
          f"speed-up best {min(ref_q) / min(our_q):.2f}x")

    int8 = Encoder(dataclasses.replace(config, quantize="int8"))
    int8_times, int8_vectors = timed(lambda: int8.encode(posts, batch_size=args.batch_size), args.repeats)
    int8_queries = int8.encode(queries, batch_size=args.batch_size)
    ids = np.arange(len(posts))
    _, exact_top = exact_search(our_vectors, ids, query_vectors, 10)
    _, int8_top = exact_search(int8_vectors, ids, int8_queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact_top, int8_top)])
    cosine = np.sum(int8_vectors * our_vectors, axis=1)
    print(f"int8, ours: {rate(len(posts), int8_times)}; speed-up over float32 ours: best "
          f"{min(our_times) / min(int8_times):.2f}x, median {statistics.median(our_times) / statistics.median(int8_times):.2f}x")
    print(f"int8 vs float32: top-10 neighbour overlap {overlap:.3f} over {len(queries)} queries; "
          f"cosine of int8 to float32 vectors: mean {cosine.mean():.4f}, min {cosine.min():.4f}")


if __name__ == "__main__":
    main()
