#!/usr/bin/env python3
"""BM25, base MiniLM and MiniLM trained by train-encoder, on TweetEval and on CrisisLexT26.

In one run, from `--data-dir` (the shared real tweets):

1. the corpus: every tweet of every TweetEval task and split, de-duplicated, one a line;
2. train-encoder from the packaged MiniLM on it (seed 0), holding out 2,000 posts with an
   eligible hashtag; the held-out hashtag hit@10 is logged every `--eval-every` steps against
   a fixed 10,000-post sample of the corpus: the curve of gain against steps; at the end
   `--base-share` of the base weights is mixed back in (the library's default, 0.5), and the
   mixture, evaluated too, is the model written;
3. an index of the whole corpus with each encoder, and eval-retrieval of the held-out posts
   (hashtags stripped, the query and its copies excluded) against BM25 and both encoders;
4. the same on CrisisLexT26 (26 crisis events, none of it seen in training): indexes with both
   encoders and 2,000 sampled posts with an eligible hashtag as queries.

Every stage is kept in `--work-dir` and skipped when rerun (an interrupted training or build
resumes), so the tables can be printed again cheaply. Hashtag limits are the library's
defaults everywhere (a tag in at least 2 posts and at most 1% of them).

    python scripts/compare_encoders.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from experiment_steps import HASHTAG_RULE, index, stage
from tweeteval import all_tweets

from hicl_retrieval.core import native
from hicl_retrieval.core.config import MODEL_PRESET_FILE, TrainConfig, resolve_encoder
from hicl_retrieval.workflows.evaluate import EvalReport, evaluate_retrieval, read_queries
from hicl_retrieval.workflows.train_encoder import HELD_OUT, REPORT_FILE, log_table, train_encoder


def write_corpus(path: Path, tweets: list[str]) -> None:
    text = "\n".join(tweets) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def trained_encoder(corpus: Path, out: Path, config: TrainConfig) -> Path:
    """Train, or reuse a finished training with the same recipe."""
    if (out / MODEL_PRESET_FILE).exists():
        done = json.loads((out / REPORT_FILE).read_text())["recipe"]
        if done != json.loads(json.dumps(config.recipe())):
            raise SystemExit(f"{out} was trained with another recipe; remove it or choose another --work-dir")
        return out
    train_encoder([corpus], out, config)
    return out


def print_report(title: str, report: EvalReport) -> None:
    print(f"\n## {title}\n{report.summary()}")
    bm25, *encoders = report.rows
    for row in encoders:
        print(f"{row.name}: hit@10 {row.scores.hit_at_k / bm25.scores.hit_at_k:.2f}x BM25's")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data", help="folder holding tweeteval/ and crisislex-t26/")
    parser.add_argument("--work-dir", default="/tmp/hicl-tweeteval", help="corpus, model and indexes (kept)")
    parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs a step (default: 32)")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default: 1e-4)")
    parser.add_argument("--untagged-negatives", type=int, default=32,
                        help="posts without an eligible hashtag added to each batch as negatives (default: 32)")
    parser.add_argument("--base-share", type=float, default=TrainConfig.base_share,
                        help="share of the base weights mixed into the trained ones (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations")
    parser.add_argument("--queries", type=int, default=2000, help="held-out posts / sampled queries (default: 2000)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    args = parser.parse_args()
    started = time.perf_counter()
    native.set_threads(args.threads)
    data, work = Path(args.data_dir), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    corpus = work / "tweeteval.txt"
    write_corpus(corpus, all_tweets(data))
    stage(f"corpus: {corpus}", started)
    config = TrainConfig(
        base=resolve_encoder("minilm"), steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        untagged_negatives=args.untagged_negatives, base_share=args.base_share, held_out=args.queries,
        eval_every=args.eval_every, checkpoint_every=args.eval_every, hashtag_rule=HASHTAG_RULE,
        threads=args.threads, progress=False,
    )
    model = trained_encoder(corpus, work / "minilm-hashtag", config)
    training = json.loads((model / REPORT_FILE).read_text())
    stage(f"trained {model} ({training['seconds']:.0f} s of training)", started)
    print(f"  {training['posts']} posts, {training['vocabulary']['tags']} hashtags in the vocabulary "
          f"(too common: {', '.join(training['vocabulary']['too_common'])}), {training['train_posts']} "
          f"training posts, {training['held_out']} held out")
    print(f"\n## Held-out hit@10 against training steps ({training['eval_corpus']}-post sample of the corpus)")
    print(log_table(training["log"]))

    indexes = [index([corpus], work / "tweeteval-minilm", "minilm"),
               index([corpus], work / "tweeteval-trained", str(model))]
    stage("TweetEval indexes", started)
    report = evaluate_retrieval(indexes, queries=read_queries(model / HELD_OUT), bm25=True, threads=args.threads)
    print_report("TweetEval: held-out posts as queries, the whole corpus searched", report)
    stage("TweetEval evaluated", started)

    crisis = sorted((data / "crisislex-t26" / "data" / "CrisisLexT26").glob("*/*-tweets_labeled.csv"))
    indexes = [index(crisis, work / "crisislex-minilm", "minilm"),
               index(crisis, work / "crisislex-trained", str(model))]
    stage("CrisisLexT26 indexes", started)
    report = evaluate_retrieval(indexes, sample=args.queries, seed=0, bm25=True, threads=args.threads)
    print_report("CrisisLexT26 (never trained on): sampled posts as queries", report)
    stage("done", started)


if __name__ == "__main__":
    main()
