"""The ``hicl-retrieval`` command: parses arguments and calls the library, nothing more.

Errors the user can fix (`HiclError`) are printed as one line on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from .errors import HiclError


def _add_hashtag_rule(command) -> None:
    command.add_argument("--hashtag-rule", default="twitter", choices=("twitter", "hicl"),
                         help="how hashtags are extracted: twitter (letters, marks, digits and _ of any script) or "
                              "hicl (the HICL reference code: ASCII letters and digits, at most 30 characters) "
                              "(default: twitter)")


def _add_index_options(command) -> None:
    command.add_argument("--index", dest="faiss_factory", default="auto",
                         help="auto, flat, hnsw, ivf, ivfpq or a FAISS factory string (inner product); "
                              "auto: exact search for up to 100,000 posts, else IVF with PQ codes that fit "
                              "--max-memory, re-ranked exactly from disk (default: auto)")
    command.add_argument("--max-memory", help="RAM budget for building and searching, e.g. 8GB (default: all RAM)")
    command.add_argument("--target-recall", type=float, default=0.95,
                         help="recall@10 against exact search that approximate search is tuned to (default: 0.95)")


def _memory(args: argparse.Namespace) -> int | None:
    from .planning import parse_size

    return parse_size(args.max_memory) if args.max_memory else None


def _add_reading_options(command) -> None:
    reading = command.add_argument_group("reading the corpus")
    reading.add_argument("--format", default="auto", choices=("auto", "text", "jsonl", "csv", "tsv", "parquet"),
                         help="corpus format (default: from the file name, else the content)")
    reading.add_argument("--text-col", help="text column / JSON key (default: detected, e.g. text, full_text)")
    reading.add_argument("--id-col", help="post id column (default: detected, e.g. id_str, id, tweet_id)")
    reading.add_argument("--author-col", help="author column (default: detected, e.g. author, screen_name)")
    reading.add_argument("--time-col", help="creation time column (default: detected, e.g. created_at)")
    reading.add_argument("--delimiter", help="CSV delimiter (default: ',' for .csv, '\\t' for .tsv)")
    reading.add_argument("--time-format",
                         help="how the time column is written, as a strptime format (e.g. '%%d/%%m/%%Y %%H:%%M') "
                              "or unix / unix_ms (default: ISO 8601, the Twitter format or Unix seconds)")
    reading.add_argument("--max-record-bytes", type=int, default=1 << 20,
                         help="reject lines/records longer than this (default: 1 MiB)")


def _reader(args: argparse.Namespace):
    from .config import ReaderConfig

    return ReaderConfig(
        format=args.format, text_col=args.text_col, id_col=args.id_col, author_col=args.author_col,
        time_col=args.time_col, delimiter=args.delimiter, max_record_bytes=args.max_record_bytes,
        time_format=args.time_format,
    )


def _add_build(commands) -> None:
    build = commands.add_parser("build", help="build an index from corpus files")
    build.add_argument("corpus", nargs="+", help="corpus files: .txt, .jsonl, .csv, .tsv, .parquet, optionally .gz/.zst")
    build.add_argument("--out", required=True, help="index directory to create")
    build.add_argument("--encoder", default="hashencoder",
                       help="preset name (hashencoder, minilm), preset .toml file, model directory or hub id "
                            "(default: hashencoder)")
    build.add_argument("--pooling", choices=("cls", "mean", "pooler"), help="override the encoder's pooling")
    _add_hashtag_rule(build)
    build.add_argument("--int8", action="store_true",
                       help="quantise the encoder's linear layers to int8 (faster on CPU; queries use it too)")
    _add_index_options(build)
    build.add_argument("--overwrite", action="store_true", help="replace an existing index (or unfinished build) at --out")
    build.add_argument("--resume", action="store_true",
                       help="continue the interrupted build at --out (rerunning the same command does it too); "
                            "fail if there is none")
    _add_reading_options(build)
    running = build.add_argument_group("running")
    running.add_argument("--batch-size", type=int, default=64, help="posts per encoder batch (default: 64)")
    running.add_argument("--chunk-size", type=int, default=4096,
                         help="posts read, encoded and stored together (default: 4096)")
    running.add_argument("--threads", type=int, help="CPU threads for torch and FAISS (default: all cores)")
    running.add_argument("--quiet", action="store_true", help="no progress bar")
    running.add_argument("--json", action="store_true", help="print the build report as JSON")


def _add_filter_options(command) -> None:
    filters = command.add_argument_group("filters (combined with AND; options that take a name may be repeated)")
    filters.add_argument("--has-hashtag", action="append", default=[], metavar="TAG", help="hits carry this hashtag")
    filters.add_argument("--lacks-hashtag", action="append", default=[], metavar="TAG", help="hits lack this hashtag")
    filters.add_argument("--author", action="append", default=[], metavar="NAME", help="hits by one of these authors")
    filters.add_argument("--exclude-author", action="append", default=[], metavar="NAME",
                         help="no hits by these authors")
    filters.add_argument("--since", metavar="TIME",
                         help="hits created at or after TIME, UTC: ISO 8601, YYYY, YYYYMM, YYYYMMDD or @UNIX_SECONDS")
    filters.add_argument("--until", metavar="TIME", help="hits created before TIME (written as for --since)")
    filters.add_argument("--source", action="append", default=[], metavar="FILE",
                         help="hits from this corpus file (full path or file name)")
    filters.add_argument("--exclude-source", action="append", default=[], metavar="FILE",
                         help="no hits from this corpus file")


def _filter(args: argparse.Namespace):
    from .filters import from_options

    return from_options(
        has_hashtags=args.has_hashtag, lacks_hashtags=args.lacks_hashtag, authors=args.author,
        exclude_authors=args.exclude_author, since=args.since, until=args.until,
        sources=args.source, exclude_sources=args.exclude_source,
    )


def _add_updates(commands) -> None:
    add = commands.add_parser("add", help="add posts to an index (skipping post ids it holds), encoding only them")
    add.add_argument("index", help="index directory")
    add.add_argument("corpus", nargs="+", help="corpus files, as for build")
    _add_reading_options(add)
    add.add_argument("--batch-size", type=int, default=64, help="posts per encoder batch (default: 64)")
    add.add_argument("--chunk-size", type=int, default=4096, help="posts read and encoded together (default: 4096)")
    add.add_argument("--threads", type=int, help="CPU threads for torch and FAISS (default: all cores)")
    add.add_argument("--quiet", action="store_true", help="no progress bar")
    delete = commands.add_parser("delete", help="remove posts from results now (from the files at `compact`)")
    delete.add_argument("index", help="index directory")
    delete.add_argument("--post-id", action="append", default=[], help="post id to delete (may be repeated)")
    _add_filter_options(delete)
    compact = commands.add_parser("compact", help="rewrite an index without its deleted posts")
    compact.add_argument("index", help="index directory")


def _add_query(commands) -> None:
    query = commands.add_parser("query", help="top-k topical neighbours of posts")
    query.add_argument("index", help="index directory")
    query.add_argument("text", nargs="?", help="the query post (or use --file)")
    query.add_argument("--file", help="file of queries, one post a line (- reads standard input)")
    query.add_argument("-k", type=int, default=10, help="hits per query (default: 10)")
    query.add_argument("--out", help="write results as JSON lines (one object a query) to this file")
    query.add_argument("--json", action="store_true", help="print results as JSON lines")
    query.add_argument("--strip-hashtags", action="store_true", help="remove hashtags from queries before encoding")
    query.add_argument("--no-dedupe", action="store_true",
                       help="keep copies of the query and of better hits (retweets, same text)")
    query.add_argument("--threads", type=int, help="CPU threads for torch and FAISS (default: all cores)")
    query.add_argument("--k-factor", type=int,
                       help="candidates per hit re-ranked exactly from the stored vectors (default: the index's)")
    _add_filter_options(query)


def _add_train_encoder(commands) -> None:
    from .config import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    train = commands.add_parser(
        "train-encoder", help="train a topic encoder on the hashtags of posts (hashtag-driven contrastive learning)")
    train.add_argument("corpus", nargs="+", help="corpus files, as for build")
    train.add_argument("--base", default="minilm",
                       help="encoder to start from: preset name, preset .toml, model directory or hub id (default: minilm)")
    train.add_argument("--out", required=True,
                       help="model directory to write (rerunning the command resumes an interrupted training)")
    train.add_argument("--overwrite", action="store_true", help="replace a trained encoder or unfinished training at --out")
    recipe = train.add_argument_group("recipe")
    recipe.add_argument("--steps", type=int, default=defaults["steps"], help="optimiser steps (default: %(default)s)")
    recipe.add_argument("--batch-size", type=int, default=defaults["batch_size"],
                        help="positive pairs a step; the other pairs are the negatives (default: %(default)s)")
    recipe.add_argument("--grad-cache", type=int, metavar="POSTS",
                        help="encode POSTS at a time with gradient caching, for batches larger than memory allows")
    recipe.add_argument("--lr", type=float, default=defaults["learning_rate"],
                        help="peak learning rate (default: %(default)s)")
    recipe.add_argument("--warmup", type=float, default=defaults["warmup"],
                        help="share of the steps warming the learning rate up (default: %(default)s)")
    recipe.add_argument("--temperature", type=float, default=defaults["temperature"],
                        help="InfoNCE temperature (default: %(default)s)")
    recipe.add_argument("--anchor-drop", type=float, default=defaults["anchor_drop"],
                        help="probability of removing each hashtag of the anchor (default: %(default)s)")
    recipe.add_argument("--positive-drop", type=float, default=defaults["positive_drop"],
                        help="probability of removing each hashtag of the positive (default: %(default)s)")
    recipe.add_argument("--max-length", type=int, default=defaults["max_length"],
                        help="tokens a post is cut to in training (default: %(default)s)")
    recipe.add_argument("--min-count", type=int, default=defaults["min_count"],
                        help="drop hashtags in fewer posts than this (default: %(default)s)")
    recipe.add_argument("--max-share", type=float, default=defaults["max_share"],
                        help="drop hashtags in more than this share of the posts, e.g. dataset markers "
                             "(default: %(default)s)")
    recipe.add_argument("--tag-power", type=float, default=defaults["tag_power"],
                        help="draw a pair's tag with probability proportional to its posts ** POWER: "
                             "1 favours frequent tags, 0 treats every tag alike (default: %(default)s)")
    recipe.add_argument("--untagged-negatives", type=int, default=defaults["untagged_negatives"],
                        help="posts without an eligible hashtag added to each batch as extra negatives "
                             "(default: %(default)s)")
    recipe.add_argument("--base-share", type=float, default=defaults["base_share"],
                        help="share of the base model averaged into the trained weights at the end, so "
                             "posts unlike the training corpus keep more of their neighbours (default: %(default)s)")
    recipe.add_argument("--held-out", type=int, default=defaults["held_out"],
                        help="posts with an eligible hashtag never trained on; the evaluation queries, "
                             "written to OUT/held_out.jsonl (default: %(default)s)")
    recipe.add_argument("--seed", type=int, default=defaults["seed"], help="random seed (default: %(default)s)")
    _add_hashtag_rule(recipe)
    running = train.add_argument_group("running")
    running.add_argument("--eval-every", type=int, default=defaults["eval_every"],
                         help="steps between held-out evaluations (default: %(default)s)")
    running.add_argument("--eval-corpus", type=int, default=defaults["eval_corpus"],
                         help="posts the held-out queries search during training (default: %(default)s)")
    running.add_argument("--checkpoint-every", type=int, default=defaults["checkpoint_every"],
                         help="steps between checkpoints (default: %(default)s)")
    running.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default: cpu)")
    running.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    running.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_reading_options(train)


def _add_eval_retrieval(commands) -> None:
    evaluate = commands.add_parser(
        "eval-retrieval", help="hashtag hit@1, hit@k, precision@k and MRR of indexes (and BM25) on the same queries")
    evaluate.add_argument("index", nargs="+", help="index directories over the same posts, one encoder each")
    queries = evaluate.add_mutually_exclusive_group(required=True)
    queries.add_argument("--queries", help="query posts with their hashtags: JSON lines with 'text' "
                                           "(e.g. a trained encoder's held_out.jsonl) or one post a line")
    queries.add_argument("--sample", type=int, metavar="N",
                         help="draw N indexed posts with an eligible hashtag as the queries")
    evaluate.add_argument("--bm25", action="store_true", help="add BM25 over the same posts as a baseline")
    evaluate.add_argument("-k", type=int, default=10, help="neighbours scored per query (default: 10)")
    evaluate.add_argument("--min-count", type=int, default=2,
                          help="hashtags in fewer indexed posts are not eligible (default: 2)")
    evaluate.add_argument("--max-share", type=float, default=0.01,
                          help="hashtags in more than this share of the posts are not eligible (default: 0.01)")
    evaluate.add_argument("--seed", type=int, default=0, help="random seed of --sample (default: 0)")
    evaluate.add_argument("--threads", type=int, help="CPU threads for torch and FAISS (default: all cores)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")


def _add_augment(commands) -> None:
    augment = commands.add_parser(
        "augment", help="add each example's top retrieved posts as text0..text{K-1} (HICL demonstrations)")
    augment.add_argument("index", help="index directory (the #Database)")
    augment.add_argument("--input", required=True, help="JSON lines, each with 'labels' and 'text'")
    augment.add_argument("--out", required=True,
                         help="JSON lines to write; ids and scores go to OUT.hits.jsonl alongside")
    augment.add_argument("--top", type=int, default=1, help="posts added per example (default: 1)")
    augment.add_argument("--strip-hashtags", action="store_true", help="remove hashtags from examples before encoding")
    augment.add_argument("--threads", type=int, help="CPU threads for torch and FAISS (default: all cores)")
    _add_filter_options(augment)


def _add_finetune(commands) -> None:
    from .config import FinetuneConfig
    from .scoring import TASK_METRICS

    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    tune = commands.add_parser("finetune", help="fine-tune a classifier with HICL demonstrations (or plainly), "
                                                "several seeds, official task metric")
    tune.add_argument("--task", required=True, choices=sorted(TASK_METRICS), help="sets the official metric")
    tune.add_argument("--backbone", default="minilm",
                      help="classifier to fine-tune: hub id, model directory or encoder preset (default: minilm)")
    data = tune.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="TweetEval task folder ({split}_text.txt, {split}_labels.txt for train, val, "
                                     "test); plain fine-tuning only")
    data.add_argument("--train", help="training examples, JSON lines (augment's output for HICL)")
    tune.add_argument("--dev", help="dev examples, JSON lines (with --train)")
    tune.add_argument("--test", help="test examples, JSON lines (with --train)")
    tune.add_argument("--no-context", action="store_true",
                      help="the baseline: fine-tune on the example alone, same seeds and budget")
    tune.add_argument("--template", default=defaults["template"],
                      help="trigger tokens before x, between x and x', after x' (default: %(default)s)")
    tune.add_argument("--seeds", type=int, nargs="+", default=list(defaults["seeds"]), help="(default: 0 1 2)")
    tune.add_argument("--epochs", type=int, default=defaults["epochs"],
                      help="most epochs of stage one (default: %(default)s)")
    tune.add_argument("--trigger-epochs", type=int, default=defaults["trigger_epochs"],
                      help="most epochs of stage two, triggers only (default: %(default)s)")
    tune.add_argument("--patience", type=int, default=defaults["patience"],
                      help="stop a stage after this many epochs without a better dev score (default: %(default)s)")
    tune.add_argument("--lr", type=float, default=defaults["learning_rate"], help="stage one (default: %(default)s)")
    tune.add_argument("--trigger-lr", type=float, default=defaults["trigger_learning_rate"],
                      help="stage two (default: %(default)s)")
    tune.add_argument("--batch-size", type=int, default=defaults["batch_size"], help="(default: %(default)s)")
    tune.add_argument("--no-group-by-length", action="store_true",
                      help="plain shuffled batches instead of batches of similar length (more padding)")
    tune.add_argument("--max-query", type=int, default=defaults["max_query"],
                      help="tokens of the example (default: %(default)s)")
    tune.add_argument("--max-demonstration", type=int, default=defaults["max_demonstration"],
                      help="tokens of the retrieved post (default: %(default)s)")
    tune.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    tune.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.add_argument("--json", action="store_true", help="print the report as JSON")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit status 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    main = _Parser(prog="hicl-retrieval", description=__doc__.splitlines()[0])
    main.add_argument("-v", "--verbose", action="store_true", help="log progress events")
    commands = main.add_subparsers(dest="command", required=True)
    _add_build(commands)
    _add_query(commands)
    _add_updates(commands)
    _add_train_encoder(commands)
    _add_eval_retrieval(commands)
    _add_augment(commands)
    _add_finetune(commands)
    reindex = commands.add_parser("reindex", help="rebuild the FAISS index as another type, without re-encoding")
    reindex.add_argument("index", help="index directory")
    _add_index_options(reindex)
    reindex.add_argument("--k-factor", type=int,
                         help="candidates per hit re-ranked exactly from the stored vectors "
                              "(default: 10 for compressed codes such as PQ, else 1)")
    reindex.add_argument("--threads", type=int, help="CPU threads for FAISS (default: all cores)")
    verify = commands.add_parser(
        "verify", help="check every file of an index against its checksums, and its posts, vectors and FAISS index")
    verify.add_argument("index", help="index directory")
    info = commands.add_parser("info", help="describe an index")
    info.add_argument("index", help="index directory")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    return main


def _build(args: argparse.Namespace) -> None:
    from .config import BuildConfig, resolve_encoder
    from .index import IndexDir
    from .indexer import build_index

    if args.resume and IndexDir(args.out).read_build_state() is None:
        raise HiclError(f"--resume: there is no unfinished build at {args.out}")
    if args.resume and args.overwrite:
        raise HiclError("--resume and --overwrite contradict each other; choose one")

    encoder = resolve_encoder(args.encoder, pooling=args.pooling)
    config = BuildConfig(
        encoder=dataclasses.replace(encoder, quantize="int8") if args.int8 else encoder,
        reader=_reader(args),
        faiss_factory=args.faiss_factory,
        max_memory=_memory(args),
        target_recall=args.target_recall,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        threads=args.threads,
        hashtag_rule=args.hashtag_rule,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    report = build_index(args.corpus, args.out, config, announce=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps({"index": str(report.index), **report.as_dict()}))
    else:
        print(f"index {report.index}")
        print(report.summary())


def _queries(args: argparse.Namespace) -> list[str]:
    if (args.text is None) == (args.file is None):
        raise HiclError("give the query either as TEXT or with --file, not both or neither")
    if args.text is not None:
        if not args.text.strip():
            raise HiclError("the query is empty; give the text of a post")
        return [args.text]
    from .files import text_lines

    stdin = args.file == "-"
    lines = text_lines(sys.stdin.buffer, "standard input") if stdin else text_lines(args.file, "query file")
    queries = [line.strip() for _, line in lines if line.strip()]
    if not queries:
        raise HiclError(f"{'standard input' if stdin else 'query file ' + args.file} holds no queries")
    return queries


def _query(args: argparse.Namespace) -> None:
    from .files import check_output
    from .retriever import Retriever

    queries = _queries(args)
    if args.out:
        check_output(args.out, inputs=[args.file] if args.file and args.file != "-" else [])
    where = _filter(args)
    with Retriever(args.index, threads=args.threads, k_factor=args.k_factor) as retriever:
        results = retriever.search(
            queries, k=args.k, dedupe=not args.no_dedupe, strip_query_hashtags=args.strip_hashtags, filter=where
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        print(f"{len(results)} queries, results in {args.out}")
    elif args.json:
        for result in results:
            print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        for number, result in enumerate(results, 1):
            print(f"[{number}] {' '.join(result.query.split())}")
            for rank, hit in enumerate(result.hits, 1):
                who = f"@{hit.author} " if hit.author else ""
                print(f"  {rank:>2}. {hit.score:.3f}  {who}{' '.join(hit.text.split())}")
            print()


def _reindex(args: argparse.Namespace) -> None:
    from . import native
    from .updates import reindex

    native.set_threads(args.threads)
    manifest = reindex(args.index, args.faiss_factory, k_factor=args.k_factor, max_memory=_memory(args),
                       target_recall=args.target_recall)
    print(f"{args.index}: {manifest.count} posts now in {manifest.faiss_factory} ({manifest.faiss_file}), "
          f"k_factor {manifest.k_factor}")


def _add(args: argparse.Namespace) -> None:
    from . import native
    from .updates import add_posts

    native.set_threads(args.threads)
    report = add_posts(args.index, args.corpus, reader=_reader(args), batch_size=args.batch_size,
                       chunk_size=args.chunk_size, progress=not args.quiet)
    print(f"{args.index}: {report.summary()}")


def _delete(args: argparse.Namespace) -> None:
    from .updates import delete_posts

    deleted = delete_posts(args.index, post_ids=args.post_id, filter=_filter(args))
    print(f"{args.index}: {deleted} posts deleted (their vectors leave the files at the next compact)")


def _compact(args: argparse.Namespace) -> None:
    from .updates import compact

    manifest = compact(args.index)
    print(f"{args.index}: compacted to {manifest.count} posts ({manifest.faiss_factory})")


def _train_encoder(args: argparse.Namespace) -> None:
    from .config import TrainConfig, resolve_encoder
    from .training import train_encoder

    config = TrainConfig(
        base=resolve_encoder(args.base), reader=_reader(args), steps=args.steps, batch_size=args.batch_size,
        grad_cache=args.grad_cache, learning_rate=args.lr, warmup=args.warmup, temperature=args.temperature,
        anchor_drop=args.anchor_drop, positive_drop=args.positive_drop, max_length=args.max_length,
        min_count=args.min_count, max_share=args.max_share, tag_power=args.tag_power,
        untagged_negatives=args.untagged_negatives, base_share=args.base_share,
        held_out=args.held_out, eval_every=args.eval_every,
        eval_corpus=args.eval_corpus, checkpoint_every=args.checkpoint_every, seed=args.seed,
        hashtag_rule=args.hashtag_rule, device=args.device,
        threads=args.threads, progress=not args.quiet,
    )
    report = train_encoder(args.corpus, args.out, config, overwrite=args.overwrite)
    print(f"encoder {report.out} (use it as: build --encoder {report.out})")
    print(report.summary())


def _eval_retrieval(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_retrieval, read_queries

    report = evaluate_retrieval(
        args.index, queries=read_queries(args.queries) if args.queries else None, sample=args.sample,
        bm25=args.bm25, k=args.k, min_count=args.min_count, max_share=args.max_share, seed=args.seed,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps({"posts": report.posts, "queries": report.queries, "skipped": report.skipped,
                          "tags": report.tags, "rows": [row.to_dict() for row in report.rows]}))
    else:
        print(report.summary())


def _augment(args: argparse.Namespace) -> None:
    from .augment import augment_file

    report = augment_file(args.index, args.input, args.out, top=args.top, strip_query_hashtags=args.strip_hashtags,
                          filter=_filter(args), threads=args.threads)
    short = f"; {report.short} with fewer than {args.top} posts found (empty texts)" if report.short else ""
    print(f"{report.examples} examples with {args.top} retrieved posts each in {report.out}, "
          f"ids and scores in {report.hits}{short}")


def _finetune(args: argparse.Namespace) -> None:
    from .config import FinetuneConfig
    from .finetune import finetune, read_jsonl_split, read_tweeteval_split

    if args.data:
        if args.dev or args.test:
            raise HiclError("--data reads all three splits; --dev and --test go with --train")
        train, dev, test = (read_tweeteval_split(args.data, split) for split in ("train", "val", "test"))
    else:
        if not (args.dev and args.test):
            raise HiclError("--train needs --dev and --test")
        train, dev, test = (read_jsonl_split(path) for path in (args.train, args.dev, args.test))
    config = FinetuneConfig(
        backbone=args.backbone, task=args.task, context=not args.no_context, template=args.template,
        learning_rate=args.lr, trigger_learning_rate=args.trigger_lr, batch_size=args.batch_size,
        group_by_length=not args.no_group_by_length, epochs=args.epochs, trigger_epochs=args.trigger_epochs,
        patience=args.patience, max_query=args.max_query,
        max_demonstration=args.max_demonstration, seeds=tuple(args.seeds), device=args.device, threads=args.threads,
        progress=not args.quiet,
    )
    report = finetune(train, dev, test, config)
    if args.json:
        print(json.dumps(report.to_dict()))
        return
    for result in report.results:
        print(f"seed {result.seed}: test {result.test:.4f}, dev {result.dev:.4f} (stage one {result.dev_stage_one:.4f}), "
              f"{result.epochs}+{result.trigger_epochs} epochs, {result.seconds:.0f} s")
    kind = "HICL" if report.context else "plain"
    print(f"{args.task} ({kind}): test {report.mean:.4f} +- {report.std:.4f} over {len(report.results)} seeds")


def _verify(args: argparse.Namespace) -> None:
    from .verify import verify_index

    report = verify_index(args.index)
    print("\n".join(report.lines()))
    if report.damaged:
        names = ", ".join(check.what for check in report.damaged)
        raise HiclError(f"{args.index} is damaged ({names}): {report.advice()}")
    print(f"{args.index}: intact")


def _info(args: argparse.Namespace) -> None:
    from .index import IndexDir

    manifest = IndexDir(args.index).read_manifest()
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        return
    enc = manifest.encoder
    stats = manifest.stats
    rejected = stats.get("rejected", {})
    print(f"index       {args.index} (format {manifest.format_version}, hicl-retrieval {manifest.library_version})")
    print(f"posts       {manifest.count}")
    print(f"encoder     {enc.preset or '-'}: {enc.model} (revision {manifest.model_revision or 'unknown'})")
    print(f"            pooling {enc.pooling}, text normalisation {enc.text_normalization}, "
          f"max {enc.max_length} tokens, {manifest.dim} dimensions")
    print(f"hashtags    {manifest.hashtag_rule} rule")
    print(f"faiss       {manifest.faiss_factory}, inner product on unit vectors, "
          f"re-rank k_factor {manifest.k_factor} ({manifest.faiss_file})")
    if manifest.tuning:
        tuning = manifest.tuning
        params = ", ".join(f"{k}={v}" for k, v in manifest.search_params.items())
        print(f"search      {params}: recall@10 {tuning['recall_at_10']:.3f} against exact search "
              f"(target {tuning['target']}, {tuning['queries']} corpus posts as queries)")
    print(f"created     {manifest.created_at}")
    if stats:
        print(f"build       read {stats.get('read')}, indexed {stats.get('indexed')}, "
              f"rejected {sum(rejected.values())} {rejected or ''}, duplicate post ids {stats.get('duplicates')}, "
              f"{stats.get('seconds')} s")
    print("files       " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in manifest.files.items()))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no bar for loading weights
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        {"build": _build, "query": _query, "reindex": _reindex, "info": _info, "add": _add, "delete": _delete,
         "compact": _compact, "verify": _verify, "train-encoder": _train_encoder,
         "eval-retrieval": _eval_retrieval, "augment": _augment,
         "finetune": _finetune}[args.command](args)
    except HiclError as exc:
        print(f"hicl-retrieval: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk or the system refused: a full disk, a permission, a vanished file
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hicl-retrieval: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hicl-retrieval: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
