#!/usr/bin/env python3
"""Our `auto` index against the HICL reference's exact IndexFlatL2, at millions of 768-d vectors.

The vectors imitate an encoder's output: topic centres are real MiniLM embeddings of TweetEval
tweets (384-d, lifted to `--dim` by a fixed random projection), each with sub-topics around it
(centre + noise of norm 0.7, re-normalised) and posts around the sub-topics (noise of norm drawn
from 0.8-1.6, so a post's cosine to its sub-topic is about 0.53-0.78); all unit length. They are
written as float16 to disk exactly as a build writes vectors.f16. Queries are 1,000 new posts
from the same generator (not in the corpus).

For each size, in one run:

- flat: ``IndexFlatL2`` with the float32 vectors in RAM, as the HICL code searches (skipped,
  and said so, when it would not fit `--flat-max-memory`);
- ours: the index `--index auto` builds for that size under `--max-memory` (IVF + PQ codes),
  trained on a sample, its nprobe tuned to recall@10 >= 0.95 on corpus posts, written and
  opened memory-mapped, candidates re-ranked exactly from the float16 vectors (k_factor);

and prints recall@10 against exact search, queries/s for 1,000 batched queries (min and median
of `--repeat`), single-query latency p50/p99, build time, and resident bytes per vector; then
filtered recall@10 with a filter keeping 30% of the posts (searched through an IDSelector);
and what a 45M-post index would need.

    python scripts/bench_search.py --data-dir ../shared/data --sizes 1000000 5000000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from timing import timed
from tweeteval import all_tweets

from hicl_retrieval import resolve_encoder
from hicl_retrieval.core import native
from hicl_retrieval.encoding.encoder import Encoder
from hicl_retrieval.index.faiss_index import (
    VectorIndex, default_k_factor, effective_factory, exact_search, filled, reranked, trained_index,
)
from hicl_retrieval.index.planning import factory_for, format_size, parse_size
from hicl_retrieval.index.tuning import recall_at_k, tune

K = 10


def memory(field: str = "VmRSS") -> int:
    """Bytes of this process's /proc status `field` (VmRSS, RssAnon, RssFile)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


_LOAD_PROBE = """
import sys
from pathlib import Path
from hicl_retrieval.core import native
from hicl_retrieval.index.faiss_index import VectorIndex

def anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

native.faiss()
before = anon()
index = VectorIndex.load(Path(sys.argv[1]), mmap=sys.argv[2] == "1")
print(anon() - before)
"""


def loaded_bytes(path: Path, *, mmap: bool) -> int:
    """Anonymous memory that loading the index at `path` takes, measured in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _LOAD_PROBE, str(path), "1" if mmap else "0"],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def centres(data_dir: Path, count: int, cache: Path) -> np.ndarray:
    """MiniLM embeddings of `count` TweetEval tweets (cached: encoding takes a minute)."""
    if cache.exists():
        return np.load(cache, allow_pickle=False)
    tweets = all_tweets(data_dir)
    rng = np.random.default_rng(0)
    chosen = [tweets[i] for i in rng.choice(len(tweets), size=count, replace=False)]
    vectors = Encoder(resolve_encoder("minilm")).encode(chosen, batch_size=64)
    np.save(cache, vectors, allow_pickle=False)
    return vectors


class Generator:
    """Posts around sub-topics around real topic centres (see the module docstring)."""

    def __init__(self, topics: np.ndarray, dim: int, subtopics: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        lift = rng.standard_normal((topics.shape[1], dim)).astype(np.float32) / np.sqrt(dim)
        centres = _unit(topics.astype(np.float32) @ lift)
        noise = _unit(rng.standard_normal((len(centres) * subtopics, dim)).astype(np.float32))
        self.subtopics = _unit(np.repeat(centres, subtopics, axis=0) + 0.7 * noise)
        self.dim = dim

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.integers(0, len(self.subtopics), size=count)
        noise = _unit(rng.standard_normal((count, self.dim), dtype=np.float32))
        scale = rng.uniform(0.8, 1.6, size=(count, 1)).astype(np.float32)
        return _unit(self.subtopics[which] + scale * noise)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corpus_vectors(generator: Generator, size: int, path: Path, seed: int) -> np.ndarray:
    """`size` posts as float16 rows in `path` (reused when present), memory-mapped."""
    if not path.exists() or path.stat().st_size != size * generator.dim * 2:
        rng = np.random.default_rng(seed)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for start in range(0, size, 100_000):
                generator.sample(min(100_000, size - start), rng).astype(np.float16).tofile(out)
        tmp.rename(path)
    return np.memmap(path, dtype=np.float16, mode="r", shape=(size, generator.dim))


def single_latencies(search, queries: np.ndarray, count: int) -> list[float]:
    times = []
    for query in queries[:count]:
        tick = time.perf_counter()
        search(query[None, :], K)
        times.append(time.perf_counter() - tick)
    return times


def bench_flat(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    faiss = native.faiss()
    before = memory()
    tick = time.perf_counter()
    size, dim = vectors.shape
    flat = faiss.IndexFlatL2(dim)
    # Filled in place: adding chunk by chunk would grow FAISS's buffer by doubling, which
    # needs 1.5x the final size at the last copy (24 GB at 5M).
    flat.codes.resize(size * dim * 4)
    codes = faiss.rev_swig_ptr(flat.codes.data(), size * dim * 4).view(np.float32).reshape(size, dim)
    for start in range(0, size, 65536):
        codes[start : start + 65536] = vectors[start : start + 65536]
    flat.ntotal = size
    build = time.perf_counter() - tick
    ram = memory() - before
    batched, _ = timed(lambda: flat.search(queries, K), args.repeat_flat)
    _, found = flat.search(queries[: args.single_flat], K)
    single = single_latencies(flat.search, queries, args.single_flat)
    result = {
        "recall": recall_at_k(found, truth[: args.single_flat], K), "build_s": build,
        "qps": [len(queries) / t for t in batched], "single_ms": [1000 * t for t in single],
        "bytes_per_vector": ram / len(vectors),
    }
    flat.reset()  # give back its RAM before ours is built
    return result


def bench_ours(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args, work: Path,
               candidate: str = "auto") -> dict:
    """`candidate` (``auto``, another `--index` name or a factory string) built, tuned and searched as a build
    and a `Retriever` do."""
    size, dim = vectors.shape
    factory = effective_factory(factory_for(candidate, size, dim, args.max_memory))
    k_factor = default_k_factor(factory)
    ids = np.arange(size, dtype=np.int64)
    tick = time.perf_counter()
    index = filled(trained_index(vectors, ids, factory, dim), vectors, ids)
    build = time.perf_counter() - tick
    tick = time.perf_counter()
    tuning = tune(index, vectors, ids, k_factor=k_factor, target=args.target_recall)
    tune_s = time.perf_counter() - tick
    path = work / f"ours-{size}-{factory.replace(',', '_')}.index"
    index.save(path)
    del index
    gc.collect()

    in_ram, mapped = loaded_bytes(path, mmap=False), loaded_bytes(path, mmap=True)
    index = VectorIndex.load(path, mmap=True, search_params=tuning.params)  # as the Retriever opens it
    search = reranked(index.search, vectors, k_factor, size)
    search(queries, K)  # warm the page cache for the lists and the re-ranked rows
    batched, _ = timed(lambda: search(queries, K), args.repeat)
    _, found = search(queries, K)
    single = single_latencies(search, queries, len(queries))

    subset = np.sort(np.random.default_rng(1).choice(size, size=int(0.3 * size), replace=False))
    _, want = exact_search(vectors, subset, queries, K)
    filtered = reranked(lambda q, k: index.search(q, k, subset=subset), vectors, k_factor, len(subset))
    tick = time.perf_counter()
    _, got = filtered(queries, K)
    filtered_s = time.perf_counter() - tick
    return {
        "factory": factory, "k_factor": k_factor, "params": tuning.params, "tuned_recall": tuning.recall_at_10,
        "recall": recall_at_k(found, truth, K), "build_s": build, "tune_s": tune_s,
        "qps": [len(queries) / t for t in batched], "single_ms": [1000 * t for t in single],
        "bytes_per_vector": in_ram / size, "mmap_anon_bytes_per_vector": mapped / size,
        "file_bytes_per_vector": path.stat().st_size / size,
        "filtered_recall": recall_at_k(got, want, K), "filtered_qps": len(queries) / filtered_s,
    }


def describe(name: str, result: dict) -> str:
    qps = result["qps"]
    single = result["single_ms"]
    return (
        f"  {name:<5} recall@10 {result['recall']:.4f}  batched {min(qps):,.0f}/{statistics.median(qps):,.0f} q/s "
        f"(min/median)  single p50 {np.percentile(single, 50):.2f} ms p99 {np.percentile(single, 99):.2f} ms  "
        f"build {result['build_s']:.1f} s  RAM {result['bytes_per_vector']:.1f} B/vector"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--topics", type=int, default=4000, help="real tweet embeddings used as topic centres")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats of the batched queries (ours)")
    parser.add_argument("--repeat-flat", type=int, default=1, help="timed repeats of the batched queries (flat)")
    parser.add_argument("--single-flat", type=int, default=20, help="single queries timed on flat (slow)")
    parser.add_argument("--max-memory", type=parse_size, default=parse_size("8GB"))
    parser.add_argument("--flat-max-memory", type=parse_size, default=parse_size("17GB"),
                        help="skip the flat baseline when its float32 vectors would exceed this")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--candidates", nargs="+", default=["auto"],
                        help="index types to measure besides flat: auto, hnsw, ivf, ivfpq or factory strings "
                             "(e.g. HNSW32 IVF1024,PQ48x4fs); default auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hicl-bench-search"))
    args = parser.parse_args()
    native.set_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"threads {native.faiss().omp_get_max_threads()}, dim {args.dim}, k {K}, {args.queries} queries")

    generator = Generator(centres(args.data_dir, args.topics, args.work / f"centres-{args.topics}.npy"), args.dim)
    queries = generator.sample(args.queries, np.random.default_rng(12345))
    for size in args.sizes:
        print(f"\n== {size:,} vectors")
        vectors = corpus_vectors(generator, size, args.work / f"vectors-{size}-{args.dim}.f16", seed=size)
        tick = time.perf_counter()
        _, truth = exact_search(vectors, np.arange(size), queries, K)
        print(f"  exact top-10 of {args.queries} queries from the float16 file: {time.perf_counter() - tick:.1f} s")
        if size * args.dim * 4 <= args.flat_max_memory:
            flat = bench_flat(vectors, queries, truth, args)
            print(describe("flat", flat))
        else:
            flat = None
            print(f"  flat  skipped: {format_size(size * args.dim * 4)} of float32 exceeds --flat-max-memory")
        for candidate in args.candidates:
            ours = bench_ours(vectors, queries, truth, args, args.work, candidate)
            print(describe(candidate, ours))
            print(f"        {ours['factory']}, k_factor {ours['k_factor']}, tuned {ours['params']} "
                  f"(recall@10 {ours['tuned_recall']:.3f} on corpus posts, {ours['tune_s']:.1f} s); "
                  f"memory-mapped: {ours['mmap_anon_bytes_per_vector']:.1f} B/vector anonymous, "
                  f"file {ours['file_bytes_per_vector']:.1f} B/vector")
            print(f"        filtered (30% of posts, IDSelector): recall@10 {ours['filtered_recall']:.4f}, "
                  f"{ours['filtered_qps']:,.0f} q/s batched")
            if flat:
                print(f"  ratio {candidate}/flat: batched q/s "
                      f"{statistics.median(ours['qps']) / statistics.median(flat['qps']):.1f}x, single p50 "
                      f"{np.percentile(flat['single_ms'], 50) / np.percentile(ours['single_ms'], 50):.1f}x faster, "
                      f"RAM 1/{flat['bytes_per_vector'] / ours['bytes_per_vector']:.1f}")
        posts = 45_000_000
        factory = effective_factory(factory_for("auto", posts, args.dim, parse_size("8GB")))
        ram = ours["bytes_per_vector"] * posts  # includes the centroids: an overestimate at 45M
        print(f"  45M posts at the measured {ours['bytes_per_vector']:.1f} B/vector: {format_size(ram)} of RAM "
              f"(auto picks {factory} for 45M under 8 GB; flat would need {format_size(posts * args.dim * 4)}); "
              f"float16 vectors on disk {format_size(posts * args.dim * 2)}")
        del vectors
        gc.collect()


if __name__ == "__main__":
    main()
