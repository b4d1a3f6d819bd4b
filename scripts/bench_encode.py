#!/usr/bin/env python3
"""Our encoding loop against the HICL reference loop and sentence-transformers, on the same model and tweets.

The loops compared, all pooling as the model's preset says and L2-normalising, so that the
vectors agree and only the loop differs:

- reference: the HICL loop (``preprocess_extract_feature.py`` / ``preprocess_match.py``): the
  database in batches of ``--batch-size`` (64) in corpus order, each padded to its longest post,
  ``torch.no_grad``; queries encoded one at a time;
- ours: `Encoder.encode` (tokenise once, sort by length, batches by the device's token budget,
  inference mode); queries batched;
- sentence-transformers: ``SentenceTransformer(path).encode(texts, batch_size=64,
  normalize_embeddings=True)``, as most users would write it (only for a sentence-transformers
  model directory, such as the packaged MiniLM).

What it prints, every timing repeated ``--repeats`` times (min and median):

- posts/s of each loop over the database, the speed-ups, and max |difference| of the vectors;
- the device's measured matmul rate (GFLOP/s, best of several) and the share of it each loop
  reaches. FLOPs counted: 2 x (weights of the encoder layers' linear maps, not embeddings nor
  pooler) per token, plus 4 x layers x hidden x length^2 per post for attention (QK^T and AV);
  useful work over real tokens, and executed work over each loop's padded batches;
- queries: the reference one at a time against ours batched;
- runtimes (CPU only): PyTorch against ONNX Runtime (``--runtime``), over the database and one query at a
  time, with the FLOP floor of each and how far their vectors are apart;
- int8 (CPU only): the dynamic-quantisation path, its speed-up and top-10 neighbour overlap;
- precision: float32, bfloat16 and float16 (``--dtypes``) for ours and for the reference loop in
  the same precision, ratios to the reference in float32 (as HICL runs it), the matmul share, and
  the top-10 neighbour overlap (exact inner-product search) and cosine of each half precision's
  vectors to float32's, on ``--half-posts`` posts (half precision is slow on most CPUs);
- ``--ray``: one process against a local Ray cluster of 1 worker x C threads and C workers x 1
  thread (C = ``--ray-cpus``), the per-worker rate that N workers scale from.

The model is the ``--encoder`` preset (default the packaged MiniLM), or with ``--random-model``
a randomly initialised RoBERTa of the #Encoder's shape (``roberta-base``; ``tiny`` for smoke
tests) with a WordPiece tokenizer trained on the tweets, saved and loaded through `Encoder`: fine
for throughput where pretrained weights cannot travel. Tweets come from TweetEval
(``--data-dir``) or a file of one tweet a line (``--tweets-file``). Nothing here needs FAISS or
DuckDB, nor the network (HF_HUB_OFFLINE is set).

    python scripts/bench_encode.py --data-dir ../shared/data --posts 5000 --queries 500 --half-posts 500 --ray
    python scripts/bench_encode.py --device cuda --tweets-file scripts/gpu_tweets.txt --random-model roberta-base \
        --posts 20000 --queries 500
    (scripts/gpu_encode.sh export, here, writes that file; scripts/gpu_encode.sh run, there, runs the second)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timing import percentile, rate, speedup, timed, timed_in_turn
from tweeteval import all_tweets

from hicl_retrieval import Encoder, EncoderConfig, resolve_encoder
from hicl_retrieval.encoding.batches import token_batches
from hicl_retrieval.encoding.devices import resolve_dtype, torch_dtype
from hicl_retrieval.encoding.encoder import model_location

RANDOM_SHAPES = {
    "roberta-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
}
"""Shapes of ``--random-model``: the #Encoder's (BERTweet, RoBERTa-base), and a tiny one for smoke tests."""
K = 10
"""Neighbours compared between precisions."""


@dataclass
class Run:
    """One precision's timings of ours and of the reference loop, and our vectors, on the same posts."""

    ours: list[float]
    reference: list[float]
    vectors: np.ndarray
    reference_vectors: np.ndarray
    query_vectors: np.ndarray


@dataclass(frozen=True)
class Shape:
    """The sizes of a model that its FLOPs are counted from."""

    linear: int
    """Weights of the linear maps of the encoder layers (no embeddings, no pooler)."""
    layers: int
    hidden: int
    intermediate: int

    def flops(self, batches: list[tuple[int, int]]) -> float:
        """FLOPs of encoding `batches`, each (posts, the width in tokens they are padded to)."""
        return sum(count * (2 * self.linear * width + 4 * self.layers * self.hidden * width**2)
                   for count, width in batches)


# ---------------------------------------------------------------- loops and timing


def reference_loop(encoder: Encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """The HICL loop: corpus order, fixed batches padded per batch, torch.no_grad."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encoder.tokenizer(
                encoder.prepare(texts[start : start + batch_size]), padding=True, truncation=True,
                max_length=encoder.config.max_length, return_tensors="pt",
            ).to(encoder.device)
            rows.append(encoder.pooled(batch["input_ids"], batch["attention_mask"]).cpu().numpy())
    return np.vstack(rows)


def top_k(database: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact inner-product top-k (unordered) of each query row."""
    k = min(k, len(database))
    return np.argpartition(-(queries @ database.T), k - 1, axis=1)[:, :k]


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(first, second)]))


# ---------------------------------------------------------------- data and models


def load_tweets(args) -> list[str]:
    if args.tweets_file is not None:
        lines = args.tweets_file.read_text(encoding="utf-8").splitlines()
        tweets = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    else:
        tweets = all_tweets(args.data_dir)
    random.Random(args.seed).shuffle(tweets)
    return tweets


def random_model(kind: str, tweets: list[str], directory: Path, seed: int) -> tuple[EncoderConfig, str]:
    """A randomly initialised RoBERTa of `kind`'s shape with a WordPiece tokenizer trained on
    `tweets`, saved in `directory`; its encoder settings (pooler output, as the #Encoder) and a
    description."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import BertProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    trained = BertWordPieceTokenizer(lowercase=True)
    trained.train_from_iterator(tweets, vocab_size=30000, show_progress=False)
    trained.post_processor = BertProcessing(("[SEP]", trained.token_to_id("[SEP]")),
                                            ("[CLS]", trained.token_to_id("[CLS]")))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trained._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(directory)
    shape = RANDOM_SHAPES[kind]
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                           eos_token_id=tokenizer.sep_token_id, **shape)
    RobertaModel(config).save_pretrained(directory)
    described = (f"random RoBERTa, {kind} shape ({shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
                 f"vocabulary {len(tokenizer)} of WordPiece trained on {len(tweets)} tweets)")
    return EncoderConfig(model=str(directory), pooling="pooler", max_length=128), described


def load_encoder(config: EncoderConfig, device: str, dtype: str, warm: list[str],
                 runtime: str = "auto") -> tuple[Encoder, float]:
    """The encoder, warmed up on `warm` (kernels chosen, memory allocated); and its load time in seconds."""
    start = time.perf_counter()
    encoder = Encoder(config, device=device, dtype=dtype, runtime=runtime)
    seconds = time.perf_counter() - start
    encoder.encode(warm)
    reference_loop(encoder, warm, len(warm))
    return encoder, seconds


def model_shape(model) -> Shape:
    linear = sum(module.weight.numel() for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear) and not name.startswith("pooler"))
    config = model.config
    return Shape(linear, config.num_hidden_layers, config.hidden_size, config.intermediate_size)


def release(encoder: Encoder) -> None:
    """Free the encoder's model (and a GPU's cached memory) before the next precision loads."""
    del encoder.model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- sections


def header(encoder: Encoder, model: str, load_seconds: float, lengths: list[int], queries: list[str], args) -> None:
    import transformers

    config, (budget, cap) = encoder.config, encoder.batch_limits(args.max_tokens)
    source = args.tweets_file or f"TweetEval under {args.data_dir}"
    on_gpu = encoder.device.type == "cuda"
    matmul = f", float32 matmul precision {torch.get_float32_matmul_precision()}" if on_gpu else ""
    print("# encoding benchmark")
    print(f"model:   {model}; pooling {config.pooling}, max_length {config.max_length}; loaded in {load_seconds:.1f}s")
    print(f"device:  {encoder.device_name}; {encoder.runtime} runtime (`--runtime auto`); torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads{matmul}; "
          f"transformers {transformers.__version__}")
    print(f"posts:   {len(lengths)} tweets ({source}), {np.mean(lengths):.1f} tokens on average, "
          f"at most {max(lengths)}; {len(queries)} queries; each timing {args.repeats} times")
    print(f"batches: reference and sentence-transformers {args.batch_size} posts; ours at most {budget} padded tokens"
          f"{f' and {cap} posts' if cap else ''}, longest posts first")


def measure(encoder: Encoder, posts: list[str], queries: list[str], args, peer=None):
    """Ours and the reference loop (and `peer`, a function, if given) over `posts` in the
    encoder's precision, run in turn; the run, and the peer's (times, vectors) or None."""
    loops = {"reference": lambda: reference_loop(encoder, posts, args.batch_size),
             "ours": lambda: encoder.encode(posts, max_tokens=args.max_tokens)}
    timings = timed_in_turn({**loops, **({"peer": peer} if peer else {})}, args.repeats)
    (ref_times, ref_vectors), (our_times, vectors) = timings["reference"], timings["ours"]
    run = Run(our_times, ref_times, vectors, ref_vectors, encoder.encode(queries, max_tokens=args.max_tokens))
    return run, timings.get("peer")


def sentence_transformers(encoder: Encoder, posts: list[str], args):
    """sentence-transformers' `encode` over `posts` as a user writes it, truncating where ours does;
    None, said why, where it cannot run."""
    location = model_location(encoder.config)
    if not Path(location, "modules.json").is_file():
        print("sentence-transformers: skipped, the model is not a sentence-transformers directory")
        return None
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers: not installed, skipped (pip install 'hicl-retrieval[bench]')")
        return None
    model = SentenceTransformer(location, device=str(encoder.device))
    model.max_seq_length = encoder.config.max_length  # its own default is 256 for MiniLM: the same vectors
    model.encode(posts[: args.batch_size], batch_size=args.batch_size)  # warm-up
    return lambda: model.encode(posts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)


def database_section(encoder: Encoder, posts: list[str], queries: list[str], args):
    """Ours, the reference loop and sentence-transformers over the posts in float32, in turn: the
    run, and sentence-transformers' (times, vectors) or None."""
    count = len(posts)
    print(f"\n## database, float32 ({count} posts; the loops run in turn, {args.repeats} times)")
    run, peer = measure(encoder, posts, queries, args, sentence_transformers(encoder, posts, args))
    print(f"reference loop:        {rate(count, run.reference)}")
    print(f"ours:                  {rate(count, run.ours)}")
    if peer is not None:
        print(f"sentence-transformers: {rate(count, peer[0])}")
    print(f"ours / reference:             {speedup(run.reference, run.ours)} (target >= 2.5x on the CPU); "
          f"max |difference| of vectors {np.abs(run.reference_vectors - run.vectors).max():.1e}")
    if peer is not None:
        print(f"ours / sentence-transformers: {speedup(peer[0], run.ours)} (target >= 1.3x on the CPU); "
              f"max |difference| of vectors {np.abs(peer[1] - run.vectors).max():.1e} (target < 1e-5)")
    return run, peer


def matmul_rate(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product laid out as a linear layer's (the weight stored
    (n x k), the layout CPU kernels are fastest on in half precision): the best of 5 timings of
    about 0.1 s each."""
    inputs = torch.randn(m, k, device=device).to(dtype)
    weight = torch.randn(n, k, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def seconds(times: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(times):
            torch.nn.functional.linear(inputs, weight)
        sync()
        return (time.perf_counter() - start) / times

    seconds(1)
    inner = max(1, int(0.1 / seconds(1)))
    return 2 * m * k * n / min(seconds(inner) for _ in range(5)) / 1e9


@functools.cache
def ceiling(encoder: Encoder, shape: Shape, dtype: str) -> tuple[float, str]:
    """The encoder's device's best matmul rate in `dtype` (GFLOP/s), of a square product and of
    the model's feed-forward product over one batch's token budget; and a line saying both."""
    side = 8192 if encoder.device.type == "cuda" else 1024
    tokens = encoder.batch_limits()[0]
    square = matmul_rate(encoder.device, torch_dtype(dtype), side, side, side)
    feed = matmul_rate(encoder.device, torch_dtype(dtype), tokens, shape.hidden, shape.intermediate)
    feed_shape = f"({tokens} x {shape.hidden}) @ ({shape.hidden} x {shape.intermediate})"
    return max(square, feed), f"{dtype} matmul: {side}^3 {square:.0f} GFLOP/s, {feed_shape} {feed:.0f} GFLOP/s"


def loop_batches(encoder: Encoder, lengths: list[int], posts: list[str], args) -> dict[str, list[tuple[int, int]]]:
    """(posts, padded width) of each batch of each loop, and of each post alone (no padding)."""
    def padded(groups) -> list[tuple[int, int]]:
        return [(len(group), max(lengths[i] for i in group)) for group in groups]

    size, count = args.batch_size, len(lengths)
    by_characters = np.argsort([-len(text) for text in posts], kind="stable")  # sentence-transformers' order
    return {
        "real": [(1, length) for length in lengths],
        "reference": padded([range(s, min(s + size, count)) for s in range(0, count, size)]),
        "ours": padded_batches(encoder, lengths, args),
        "sentence-transformers": padded([by_characters[s : s + size] for s in range(0, count, size)]),
    }


def ceiling_section(encoder: Encoder, shape: Shape, batches, timings: dict[str, list[float]]) -> None:
    top, line = ceiling(encoder, shape, "float32")
    useful = shape.flops(batches["real"])
    real = sum(width for _, width in batches["real"])
    print(f"\n## share of the device's matmul rate, float32 (the ceiling: the best of {line})")
    print(f"FLOPs counted: 2 x {shape.linear / 1e6:.2f}M linear weights of the encoder layers (not embeddings nor "
          f"pooler) per token + 4 x {shape.layers} layers x {shape.hidden} hidden x length^2 per post (QK^T, AV)")
    print(f"useful work, over the {real} real tokens: {useful / 1e9:.1f} GFLOP; executed: over each loop's padded "
          "batches (sentence-transformers' counted from its order by characters and our token counts)")
    for name, times in timings.items():
        executed = shape.flops(batches[name])
        tokens = sum(count * width for count, width in batches[name])
        print(f"{name:22s} {useful / min(times) / 1e9:8.1f} GFLOP/s useful = {useful / min(times) / 1e9 / top:6.1%} "
              f"of the ceiling; executed {executed / min(times) / 1e9 / top:6.1%} "
              f"({tokens} padded tokens, +{tokens / real - 1:.0%})")


def queries_section(encoder: Encoder, queries: list[str], args) -> None:
    timings = timed_in_turn({"reference": lambda: [reference_loop(encoder, [q], 1) for q in queries],
                             "ours": lambda: encoder.encode(queries, max_tokens=args.max_tokens)}, args.repeats)
    ref_times, our_times = timings["reference"][0], timings["ours"][0]
    print(f"\n## queries, float32 ({len(queries)})")
    print(f"reference (one at a time): {rate(len(queries), ref_times)}")
    print(f"ours (batched):            {rate(len(queries), our_times)}")
    print(f"ours / reference: {speedup(ref_times, our_times)}")


def runtime_section(config: EncoderConfig, shape: Shape, posts: list[str], queries: list[str], args) -> None:
    """PyTorch against ONNX Runtime, the same model on the CPU: the database in batches, and queries one at a time
    (a service's unbatched case), each query timed in both in turn; and how far their vectors are apart."""
    from hicl_retrieval.encoding.onnx_runtime import runtime_version

    if runtime_version() is None:
        print("\n## runtimes: ONNX Runtime is not installed, skipped (pip install 'hicl-retrieval[onnx]')")
        return
    warm = posts[: args.batch_size]
    (eager, eager_load), (onnx, onnx_load) = (load_encoder(config, "cpu", "float32", warm, runtime)
                                              for runtime in ("torch", "onnx"))
    top, line = ceiling(eager, shape, "float32")
    print(f"\n## runtimes, float32 on the CPU: PyTorch {torch.__version__} (eager, inference mode) against ONNX "
          f"Runtime {runtime_version()} (loaded in {eager_load:.1f}s and {onnx_load:.1f}s; the latter's first load "
          f"exports the graph, later ones read it from the cache and check it against PyTorch's vectors)")
    timings = timed_in_turn({"torch": lambda: eager.encode(posts, max_tokens=args.max_tokens),
                             "onnx": lambda: onnx.encode(posts, max_tokens=args.max_tokens)}, args.repeats)
    (eager_times, eager_vectors), (onnx_times, onnx_vectors) = timings["torch"], timings["onnx"]
    lengths = [len(row) for row in eager.tokenize(posts)]
    floor = shape.flops(padded_batches(eager, lengths, args)) / top / 1e9
    print(f"database, {len(posts)} posts: torch {rate(len(posts), eager_times)}; onnx {rate(len(posts), onnx_times)}; "
          f"onnx / torch {speedup(eager_times, onnx_times)}; floor {floor:.2f}s (their padded batches' FLOPs at {line})")
    cosine = np.sum(eager_vectors * onnx_vectors, axis=1)
    print(f"vectors: least cosine onnx to torch {cosine.min():.7f}, max |difference| "
          f"{np.abs(eager_vectors - onnx_vectors).max():.1e}")
    single = {"torch": [], "onnx": []}
    for _ in range(args.repeats):
        for query in queries:
            for name, encoder in (("torch", eager), ("onnx", onnx)):
                start = time.perf_counter()
                encoder.encode([query])
                single[name].append(1000 * (time.perf_counter() - start))
    query_lengths = [len(row) for row in eager.tokenize(queries)]
    floor_ms = np.median([shape.flops([(1, n)]) for n in query_lengths]) / top / 1e9 * 1e3
    print(f"one query at a time ({len(queries)} queries x {args.repeats}, in turn), ms: "
          + "; ".join(f"{name} p50 {percentile(times, 50):.2f} p99 {percentile(times, 99):.2f} min {min(times):.2f}"
                      for name, times in single.items())
          + f"; p50 onnx / torch {percentile(single['torch'], 50) / percentile(single['onnx'], 50):.2f}x; floor "
            f"{floor_ms:.2f} ms (the median query's {int(np.median(query_lengths))} tokens' FLOPs at that rate)")


def padded_batches(encoder: Encoder, lengths: list[int], args) -> list[tuple[int, int]]:
    """(posts, padded width) of each batch `Encoder.encode` makes of posts of `lengths`."""
    return [(len(group), max(lengths[i] for i in group))
            for group in token_batches(lengths, *encoder.batch_limits(args.max_tokens))]


def int8_section(config: EncoderConfig, run: Run, posts: list[str], queries: list[str], args) -> None:
    int8, _ = load_encoder(dataclasses.replace(config, quantize="int8"), "cpu", "float32", posts[: args.batch_size])
    times, vectors = timed(lambda: int8.encode(posts, max_tokens=args.max_tokens), args.repeats)
    query_vectors = int8.encode(queries, max_tokens=args.max_tokens)
    common = overlap(top_k(run.vectors, run.query_vectors), top_k(vectors, query_vectors))
    cosine = np.sum(vectors * run.vectors, axis=1)
    print(f"\n## int8 (dynamic quantisation of the linear layers), ours, {len(posts)} posts")
    print(f"int8: {rate(len(posts), times)}; speed-up over float32: {speedup(run.ours, times)}")
    print(f"int8 vs float32: top-{K} overlap {common:.3f} over {len(queries)} queries; "
          f"cosine to float32 vectors: mean {cosine.mean():.4f}, min {cosine.min():.4f}")


def precision_section(encoder: Encoder, shape: Shape, full: Run, posts: list[str], lengths: list[int],
                      queries: list[str], args) -> None:
    """float32 and each half precision on the same posts: ours and the reference loop in that
    precision, the share of that precision's matmul ceiling, and how far the neighbours move."""
    on_gpu = encoder.device.type == "cuda"
    count = min(args.half_posts or (len(posts) if on_gpu else 500), len(posts))
    subset, useful = posts[:count], shape.flops([(1, length) for length in lengths[:count]])
    halves = dict.fromkeys(resolve_dtype(d, str(encoder.device)) for d in args.dtypes)
    dtypes = ["float32", *(d for d in halves if d != "float32")]
    print(f"\n## precision, {count} posts (vectors are float32 whatever the model computes in)"
          + ("; targets on one H200 in bfloat16: >= 5000 posts/s, >= 3x the reference" if on_gpu else ""))
    runs: dict[str, Run] = {}
    for dtype in dtypes:
        if dtype == "float32":
            run = full if count == len(posts) else measure(encoder, subset, queries, args)[0]
        else:
            half, _ = load_encoder(encoder.config, str(encoder.device), dtype, subset[: args.batch_size])
            run = measure(half, subset, queries, args)[0]
            release(half)
        runs[dtype] = run
        top, line = ceiling(encoder, shape, dtype)
        print(f"{dtype:8s} ours      {rate(count, run.ours)}; {useful / min(run.ours) / 1e9 / top:.1%} of the "
              f"ceiling ({line})")
        print(f"{'':8s} reference {rate(count, run.reference)}, in {dtype}")
        print(f"{'':8s} ours / reference in {dtype}: {speedup(run.reference, run.ours)}"
              + (f"; ours / reference in float32 (as HICL runs it): {speedup(runs['float32'].reference, run.ours)}"
                 if dtype != "float32" else ""))
    fp32 = runs["float32"]
    exact = top_k(fp32.vectors, fp32.query_vectors)
    sample = fp32.vectors[:1000]
    between = (sample @ sample.T).sum() - len(sample)
    mean = between / max(1, len(sample) * (len(sample) - 1))
    print(f"mean cosine between two float32 post vectors: {mean:.4f}"
          + (" (near 1, as with a random model: the vectors are nearly collinear and neighbours rest on tiny "
             "differences, so the overlap below says little)" if mean > 0.9 else ""))
    for dtype in dtypes[1:]:
        run, cosine = runs[dtype], np.sum(runs[dtype].vectors * fp32.vectors, axis=1)
        print(f"{dtype} vs float32: top-{K} overlap {overlap(exact, top_k(run.vectors, run.query_vectors)):.3f} "
              f"(target >= 0.95) over {len(queries)} queries; cosine to float32 vectors: "
              f"mean {cosine.mean():.4f}, min {cosine.min():.4f}")


def ray_section(config: EncoderConfig, posts: list[str], args) -> None:
    """One process against Ray workers on the same chunks; Ray's start and the workers' loading
    are timed apart, not in the rates."""
    import ray

    from hicl_retrieval.core.config import DeviceConfig, RayConfig
    from hicl_retrieval.encoding.pools import LocalEncoding
    from hicl_retrieval.encoding.ray_workers import RayEncoding, connect

    cpus = args.ray_cpus
    chunks = [posts[s : s + args.ray_chunk] for s in range(0, len(posts), args.ray_chunk)]
    running = DeviceConfig(device="cpu", dtype="float32", max_tokens_per_batch=args.max_tokens)

    def collect(encoding, items=chunks) -> np.ndarray:
        return np.vstack([vectors for _, vectors in encoding.encoded(items, lambda chunk: chunk)])

    print(f"\n## Ray, {len(posts)} posts in {len(chunks)} chunks of {args.ray_chunk}, float32 on {cpus} CPUs")
    torch.set_num_threads(cpus)
    local = LocalEncoding(load_encoder(config, "cpu", "float32", posts[: args.batch_size])[0], running)
    local_times, local_vectors = timed(lambda: collect(local), args.repeats)
    print(f"one process, {cpus} threads:   {rate(len(posts), local_times)}")
    start = time.perf_counter()
    connect(RayConfig(address="local", cpus=cpus))
    print(f"(a local Ray cluster of {cpus} CPUs started in {time.perf_counter() - start:.1f}s)")
    times = {}
    for workers, threads in ((1, cpus), (cpus, 1)):
        start = time.perf_counter()
        pool = RayEncoding(config, running, RayConfig(address="local", workers=workers, threads=threads, cpus=cpus),
                           dtype="float32")
        loaded = time.perf_counter() - start
        collect(pool, chunks[:workers])  # warm-up of each worker
        times[workers], vectors = timed(functools.partial(collect, pool), args.repeats)
        pool.close()
        print(f"Ray {workers} worker(s) x {threads} thread(s): {rate(len(posts), times[workers])} (workers loaded in "
              f"{loaded:.1f}s); max |difference| to one process {np.abs(vectors - local_vectors).max():.1e}")
    ray.shutdown()
    per_worker = len(posts) / min(times[cpus]) / cpus
    print(f"{cpus} workers / one process: {speedup(local_times, times[cpus])} (target >= 0.85x)")
    print(f"per-worker rate (1 thread): {per_worker:.1f} posts/s; N workers ~ N x {per_worker:.1f} posts/s, "
          "bounded by the rate the driver reads and writes at (scripts/bench_driver.py)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="TweetEval's parent folder")
    source.add_argument("--tweets-file", type=Path, help="a file of tweets, one a line, instead of TweetEval")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--encoder", default="minilm", help="encoder preset (default minilm)")
    model.add_argument("--random-model", choices=sorted(RANDOM_SHAPES),
                       help="a randomly initialised RoBERTa of this shape instead of a preset")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64, help="posts per batch of the reference loop and "
                        "of sentence-transformers (default 64, as HICL)")
    parser.add_argument("--max-tokens", type=int, help="padded tokens per batch of ours (default: the device's)")
    parser.add_argument("--dtypes", type=lambda text: [d for d in text.split(",") if d],
                        default=["bfloat16", "float16"], help="half precisions to compare with float32 (default bfloat16,float16)")
    parser.add_argument("--half-posts", type=int, help="posts of the precision comparison (default: all on a GPU, "
                        "500 on the CPU, where half precision is several times slower)")
    parser.add_argument("--ray", action="store_true", help="also compare one process with Ray workers (CPU)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    parser.add_argument("--ray-chunk", type=int, default=512, help="posts per chunk sent to a worker (default 512)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    # before transformers and sentence-transformers are imported; Ray's workers inherit them
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    args = parse_args()
    tweets = load_tweets(args)
    posts, queries = tweets[: args.posts], tweets[args.posts : args.posts + args.queries]
    with tempfile.TemporaryDirectory() as scratch:
        if args.random_model:
            config, model = random_model(args.random_model, posts + queries, Path(scratch), args.seed)
        else:
            config = resolve_encoder(args.encoder)
            model = f"{args.encoder} ({model_location(config)})"
        encoder, load_seconds = load_encoder(config, args.device, "float32", posts[: args.batch_size])
        lengths = [len(row) for row in encoder.tokenize(posts)]
        header(encoder, model, load_seconds, lengths, queries, args)
        run, peer = database_section(encoder, posts, queries, args)
        shape = model_shape(encoder.model)
        timings = {"reference": run.reference, "ours": run.ours, **({"sentence-transformers": peer[0]} if peer else {})}
        ceiling_section(encoder, shape, loop_batches(encoder, lengths, posts, args), timings)
        queries_section(encoder, queries, args)
        if encoder.device.type == "cpu":
            runtime_section(config, shape, posts, queries, args)
            int8_section(config, run, posts, queries, args)
        precision_section(encoder, shape, run, posts, lengths, queries, args)
        if args.ray:
            ray_section(config, posts, args)


if __name__ == "__main__":
    main()
