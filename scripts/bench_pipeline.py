#!/usr/bin/env python3
"""How much of the encoder's own speed a whole build keeps: `hicl-retrieval build` against the encoder alone.

The same posts, the same model, the same device and precision, in one run:

- the encoder alone: `Encoder.encode` over every post's text, already in memory (the model loaded and
  warmed up first): the rate the device gives, with nothing around it;
- the build: `hicl-retrieval build` of the same posts as Twitter API v1.1 objects of about 3 KB
  (scripts/bench_driver.py makes them from the tweets), an exact index, with each of `--workers`,
  as a user runs it (its seconds include starting, loading the model in every worker, FAISS and the
  commit).

It prints posts/s of both and the share of the encoder's rate the build keeps, next to the work's
floor: the FLOPs of the model over the posts' real tokens at the device's measured matmul rate.

The model is a randomly initialised RoBERTa of the #Encoder's shape (`--random-model roberta-base`;
`tiny` for a smoke test) with a WordPiece tokenizer trained on the tweets, as bench_encode.py makes it:
pretrained weights cannot travel to a GPU machine, and the speed is the same. On a GPU machine,
scripts/gpu_encode.sh build runs it (DuckDB and FAISS installed there from carried wheels).

    python scripts/bench_pipeline.py --data-dir ../shared/data --random-model tiny --device cpu --posts 20000
    python scripts/bench_pipeline.py --tweets-file scripts/gpu_tweets.txt --random-model roberta-base \\
        --device cuda --dtype bfloat16 --posts 1000000 --workers 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def encoder_alone(config, texts: list[str], device: str, dtype: str) -> tuple[float, float, int]:
    """(seconds to encode `texts`, the device's measured matmul rate in GFLOP/s, the model's FLOPs over the texts'
    real tokens), the model loaded and warmed up first."""
    import torch
    from bench_encode import matmul_rate, model_shape

    from hicl_retrieval import Encoder

    encoder = Encoder(config, device=device, dtype=dtype)
    encoder.encode(texts[:2048])
    sync = torch.cuda.synchronize if encoder.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    encoder.encode(texts)
    sync()
    seconds = time.perf_counter() - start
    shape = model_shape(encoder.model)
    lengths = [len(row) for row in encoder.tokenize(texts[:20000])]
    flops = shape.flops([(1, length) for length in lengths]) * len(texts) / len(lengths)
    rate = matmul_rate(encoder.device, encoder.model.dtype, 4096, shape.hidden, shape.intermediate)
    del encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return seconds, rate, flops


def cli_build(corpus: Path, out: Path, model: Path, device: str, dtype: str, workers: int) -> tuple[float, dict]:
    """(wall seconds of the process, its JSON report) of `hicl-retrieval build` as a user runs it."""
    command = [sys.executable, "-m", "hicl_retrieval.cli", "build", str(corpus), "--out", str(out), "--encoder",
               str(model), "--pooling", "pooler", "--device", device, "--dtype", dtype, "--index", "flat",
               "--workers", str(workers), "--overwrite", "--quiet", "--json"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"the build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    sys.path.insert(0, str(HERE))
    from bench_driver import write_corpus
    from bench_encode import RANDOM_SHAPES, random_model
    from tweeteval import all_tweets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="TweetEval's parent folder")
    source.add_argument("--tweets-file", type=Path, help="a file of tweets, one a line, instead of TweetEval")
    parser.add_argument("--random-model", choices=sorted(RANDOM_SHAPES), default="roberta-base")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (by device)")
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--work", type=Path, help="where the corpus and index go (default: a temporary folder)")
    args = parser.parse_args()

    if args.tweets_file:
        tweets = [line.strip() for line in args.tweets_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        tweets = all_tweets(args.data_dir)
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        folder = Path(scratch)
        tick = time.perf_counter()
        corpus = folder / "posts.jsonl"
        write_corpus(corpus, tweets, args.posts, "api")
        print(f"{args.posts} posts as API v1.1 objects ({corpus.stat().st_size / args.posts:.0f} bytes a post), "
              f"written in {time.perf_counter() - tick:.1f} s", flush=True)
        config, described = random_model(args.random_model, tweets[:50000], folder / "model", seed=0)
        texts = [tweets[number % len(tweets)] for number in range(args.posts)]
        # the text a build encodes: a retweet's is its original's (bench_driver.write_corpus makes every third one)
        texts = [tweets[(number * 7) % len(tweets)] if number % 3 == 2 else text for number, text in enumerate(texts)]
        alone, rate, flops = encoder_alone(config, texts, args.device, args.dtype)
        del texts
        print(f"model: {described}; device {args.device}, dtype {args.dtype}")
        print(f"encoder alone: {alone:.1f} s = {args.posts / alone:,.0f} posts/s; its work, {flops / 1e12:.1f} TFLOP "
              f"over the real tokens, at the measured matmul rate of {rate:,.0f} GFLOP/s: {flops / rate / 1e9:.1f} s "
              f"(the floor; the encoder reaches {flops / alone / 1e9 / rate:.0%} of it)", flush=True)
        for workers in args.workers:
            seconds, report = cli_build(corpus, folder / "index", folder / "model", args.device, args.dtype, workers)
            stages = ", ".join(f"{name} {value:.1f}" for name, value in report.get("stages", {}).items())
            print(f"build, --workers {workers}: {seconds:.1f} s = {args.posts / seconds:,.0f} posts/s "
                  f"({report['indexed']} indexed, on {report['encoded_on']}; model load {report['load_seconds']:.1f} s"
                  f"{'; stages ' + stages if stages else ''}); the encoder alone is {alone / seconds:.0%} of it, "
                  f"the build {seconds / alone:.2f}x the encoder's time", flush=True)


if __name__ == "__main__":
    main()
