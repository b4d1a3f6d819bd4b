"""Commands that read an index: query, augment (HICL demonstrations), eval-retrieval."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import HiclError
from . import options


def register(commands) -> None:
    query = commands.add_parser("query", help="top-k topical neighbours of posts")
    options.add_index(query)
    query.add_argument("text", nargs="?", help="the query post (or use --file)")
    query.add_argument("--file", help="file of queries, one post a line (- reads standard input)")
    query.add_argument("-k", type=int, default=10, help="hits per query (default: 10)")
    query.add_argument("--out", help="write results as JSON lines (one object a query) to this file")
    query.add_argument("--json", action="store_true", help="print results as JSON lines")
    query.add_argument("--strip-hashtags", action="store_true", help="remove hashtags from queries before encoding")
    query.add_argument("--no-dedupe", action="store_true",
                       help="keep copies of the query and of better hits (retweets, same text)")
    options.add_threads(query)
    options.add_device(query)
    options.add_k_factor(query)
    options.add_filters(query)
    query.set_defaults(run=_query)

    augment = commands.add_parser(
        "augment", help="add each example's top retrieved posts as text0..text{K-1} (HICL demonstrations)")
    options.add_index(augment, "index directory (the #Database)")
    augment.add_argument("--input", required=True, help="JSON lines, each with 'labels' and 'text'")
    augment.add_argument("--out", required=True,
                         help="JSON lines to write; ids and scores go to OUT.hits.jsonl alongside")
    augment.add_argument("--top", type=int, default=1, help="posts added per example (default: 1)")
    augment.add_argument("--strip-hashtags", action="store_true", help="remove hashtags from examples before encoding")
    options.add_threads(augment)
    options.add_device(augment)
    options.add_filters(augment)
    augment.set_defaults(run=_augment)

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
    options.add_vocabulary(evaluate)
    evaluate.add_argument("--seed", type=int, default=0, help="random seed of --sample (default: 0)")
    options.add_plot(evaluate, "hashtag hit@1..k, one line per retriever")
    options.add_threads(evaluate)
    options.add_device(evaluate)
    options.add_json(evaluate)
    evaluate.set_defaults(run=_eval_retrieval)


def _queries(args: argparse.Namespace) -> tuple[list[str], list[int] | None, int]:
    """The queries, the 1-based line of each in `--file` (None for a TEXT query), and the lines skipped as showing
    nothing (blank, or only invisible characters), so that every answer can say which line it answers."""
    if (args.text is None) == (args.file is None):
        raise HiclError("give the query either as TEXT or with --file, not both or neither")
    from ..core.text import check_unicode, is_blank

    if args.text is not None:
        if not args.text.strip():
            raise HiclError("the query is empty; give the text of a post")
        return [check_unicode(args.text, "the query")], None, 0  # before the model loads (the search checks it too)
    from ..core.files import text_lines

    stdin = args.file == "-"
    lines = text_lines(sys.stdin.buffer, "standard input") if stdin else text_lines(args.file, "query file")
    kept = [(number, line.strip()) for number, line in lines if not is_blank(line)]
    if not kept:
        raise HiclError(f"{'standard input' if stdin else 'query file ' + args.file} holds no queries")
    return [query for _, query in kept], [number for number, _ in kept], len(lines) - len(kept)


def _query(args: argparse.Namespace) -> None:
    from ..core.files import check_output
    from ..workflows.search import Retriever

    queries, numbers, skipped = _queries(args)
    if args.out:
        check_output(args.out, inputs=[args.file] if args.file and args.file != "-" else [])
    where = options.filter_of(args)
    with Retriever(args.index, threads=args.threads, k_factor=args.k_factor,
                   running=options.device_of(args)) as retriever:
        results = retriever.search(
            queries, k=args.k, dedupe=not args.no_dedupe, strip_query_hashtags=args.strip_hashtags, filter=where
        )
    answers = [({"line": number} if numbers else {}) | result.to_dict()
               for number, result in zip(numbers or [None] * len(results), results)]
    skipped_note = f"; {skipped} lines skipped (blank, or only invisible characters)" if skipped else ""
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            for answer in answers:
                handle.write(json.dumps(answer, ensure_ascii=False) + "\n")
        print(f"{len(results)} queries, results in {args.out}{skipped_note}")
    elif args.json:
        for answer in answers:
            print(json.dumps(answer, ensure_ascii=False))
    else:
        for number, result in zip(numbers or range(1, len(results) + 1), results):
            print(f"[{'line ' if numbers else ''}{number}] {' '.join(result.query.split())}")
            for rank, hit in enumerate(result.hits, 1):
                who = f"@{hit.author} " if hit.author else ""
                print(f"  {rank:>2}. {hit.score:.3f}  {who}{' '.join(hit.text.split())}")
            print()
    if skipped and not args.out:
        print(f"{len(results)} queries{skipped_note}", file=sys.stderr)


def _augment(args: argparse.Namespace) -> None:
    from ..workflows.augment import augment_file

    report = augment_file(args.index, args.input, args.out, top=args.top, strip_query_hashtags=args.strip_hashtags,
                          filter=options.filter_of(args), threads=args.threads,
                          running=options.device_of(args))
    short = f"; {report.short} with fewer than {args.top} posts found (empty texts)" if report.short else ""
    print(f"{report.examples} examples with {args.top} retrieved posts each in {report.out}, "
          f"ids and scores in {report.hits}{short}")


def _eval_retrieval(args: argparse.Namespace) -> None:
    from ..core.plots import check_plot_path, write_curves
    from ..workflows.evaluate import evaluate_retrieval, read_queries

    if args.plot:
        check_plot_path(args.plot)
    report = evaluate_retrieval(
        args.index, queries=read_queries(args.queries) if args.queries else None, sample=args.sample,
        bm25=args.bm25, k=args.k, min_count=args.min_count, max_share=args.max_share, seed=args.seed,
        threads=args.threads, running=options.device_of(args),
    )
    if args.json:
        print(json.dumps({"posts": report.posts, "queries": report.queries, "skipped": report.skipped,
                          "tags": report.tags, "rows": [row.to_dict() for row in report.rows]}))
    else:
        print(report.summary())
    if args.plot:
        split = f"from {args.queries}" if args.queries else f"{args.sample} indexed posts drawn with seed {args.seed}"
        numbers = write_curves(
            args.plot, title=f"hashtag hit@k of {report.queries} queries ({split}), hashtags stripped; {report.posts} posts",
            x=range(1, args.k + 1), series={row.name: row.curve for row in report.rows}, xlabel="k",
            ylabel="hit@k (a neighbour shares a hashtag)", details={"queries": report.queries, "posts": report.posts})
        print(f"plot in {args.plot}, its numbers in {numbers}", file=sys.stderr if args.json else sys.stdout)


